// urql against a running stations-api: a mutation, a query, an automatic persisted query over
// GET with urql's persisted exchange, and a list read page by page. Started by
// api/tests/api/clients.rs, which owns the server; exits 1 with what went wrong.
//
//   node urql.mjs --url http://127.0.0.1:PORT/graphql --token TOKEN --prefix P

import { parseArgs } from 'node:util';
import { Client, fetchExchange, gql } from '@urql/core';
import { persistedExchange } from '@urql/exchange-persisted';
import { check, recordingFetch } from './common.mjs';

const { values: options } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    prefix: { type: 'string', default: 'UR' },
  },
});
if (!options.url || !options.token) {
  console.error('usage: urql.mjs --url URL --token TOKEN [--prefix P]');
  process.exit(2);
}

const sent = [];
const client = (exchanges) =>
  new Client({
    url: options.url,
    exchanges,
    fetch: recordingFetch(sent),
    fetchOptions: { headers: { authorization: `Bearer ${options.token}` } },
    requestPolicy: 'network-only',
  });
const succeeded = (result, what) => {
  check(!result.error, what, result.error?.graphQLErrors ?? `${result.error}`);
  return result.data;
};

const plain = client([fetchExchange]);
const codes = [1, 2, 3, 4, 5].map((n) => `${options.prefix}${n}`);
const created = succeeded(
  await plain
    .mutation(
      gql`mutation Create($inputs: [CreateStationInput!]!) { createStations(inputs: $inputs) { id code } }`,
      { inputs: codes.map((code, index) => ({ code, name: `urql ${index}`, lat: -10 - index, lng: -20 })) },
    )
    .toPromise(),
  'createStations',
);
check(created.createStations.length === 5, 'five stations created', created);
const byId = succeeded(
  await plain
    .query(gql`query One($id: ID!) { station(id: $id) { code } }`, { id: created.createStations[4].id })
    .toPromise(),
  'station(id)',
);
check(byId.station.code === codes[4], 'station(id) reads the last one back', byId);

// A persisted query: GET with the hash, the text once on a miss, then the hash alone.
sent.length = 0;
const persisted = client([persistedExchange({ preferGetForPersistedQueries: true }), fetchExchange]);
const PERSISTED = gql(`
  query Persisted($code: String) {
    ${options.prefix}: stations(first: 5, filter: { code: $code }) { totalCount }
  }
`);
for (const round of [1, 2]) {
  const data = succeeded(
    await persisted.query(PERSISTED, { code: codes[2] }).toPromise(),
    `persisted query, round ${round}`,
  );
  check(data[options.prefix].totalCount === 1, `persisted query finds the station, round ${round}`, data);
}
const shapes = sent.map((request) => `${request.method} ${request.hasQuery ? 'text' : 'hash'}`);
check(
  JSON.stringify(shapes) === JSON.stringify(['GET hash', 'GET text', 'GET hash']),
  'the hash alone first, the text once, then the hash alone',
  sent,
);

// The list, two at a time, following pageInfo.endCursor.
const PAGE = gql`
  query Page($after: String, $filter: StationFilter) {
    stations(first: 2, after: $after, filter: $filter, orderBy: { field: CODE }) {
      edges { node { code } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
const filter = { bbox: { minLat: -15, maxLat: -9, minLng: -21, maxLng: -19 } };
const listed = [];
let after = null;
let pages = 0;
do {
  const data = succeeded(await plain.query(PAGE, { after, filter }).toPromise(), `page ${pages + 1}`);
  listed.push(...data.stations.edges.map((edge) => edge.node.code));
  after = data.stations.pageInfo.hasNextPage ? data.stations.pageInfo.endCursor : null;
  pages += 1;
} while (after);
check(
  JSON.stringify(listed) === JSON.stringify(codes) && pages === 3,
  'three pages of two hold the five stations in order',
  { listed, pages },
);
console.log('urql: mutation, query, persisted GET and pagination all worked');
