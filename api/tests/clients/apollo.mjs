// Apollo Client against a running stations-api, as an application uses it: a mutation, a query,
// an automatic persisted query sent over GET (hash first, the text once when the server does
// not know it, the hash alone afterwards), and a list read page by page with fetchMore.
// Started by api/tests/api/clients.rs, which owns the server; exits 1 with what went wrong.
//
//   node apollo.mjs --url http://127.0.0.1:PORT/graphql --token TOKEN --prefix P

import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { relayStylePagination } from '@apollo/client/utilities';
import { check, recordingFetch } from './common.mjs';

const { values: options } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    prefix: { type: 'string', default: 'AP' },
  },
});
if (!options.url || !options.token) {
  console.error('usage: apollo.mjs --url URL --token TOKEN [--prefix P]');
  process.exit(2);
}

const sent = [];
const client = (link) =>
  new ApolloClient({
    link,
    cache: new InMemoryCache({
      typePolicies: { Query: { fields: { stations: relayStylePagination(['filter']) } } },
    }),
  });
const http = () =>
  new HttpLink({
    uri: options.url,
    headers: { authorization: `Bearer ${options.token}` },
    fetch: recordingFetch(sent),
  });

// A mutation with variables, then the station read back by id.
const plain = client(http());
const codes = [1, 2, 3, 4, 5].map((n) => `${options.prefix}${n}`);
const created = await plain.mutate({
  mutation: gql`
    mutation Create($inputs: [CreateStationInput!]!) {
      createStations(inputs: $inputs) { id code }
    }
  `,
  variables: {
    inputs: codes.map((code, index) => ({ code, name: `Apollo ${index}`, lat: 10 + index, lng: 20 })),
  },
});
check(created.data.createStations.length === 5, 'createStations created five stations', created);
const firstId = created.data.createStations[0].id;
const byId = await plain.query({
  query: gql`query One($id: ID!) { station(id: $id) { id code name } }`,
  variables: { id: firstId },
});
check(byId.data.station.code === codes[0], 'station(id) reads the first one back', byId);

// An automatic persisted query over GET: a fresh client, as after a page load. The alias makes
// the document one this server has not seen yet.
const PERSISTED = gql(`
  query Persisted($code: String) {
    ${options.prefix}: stations(first: 5, filter: { code: $code }) { totalCount }
  }
`);
sent.length = 0;
const persisted = client(
  new PersistedQueryLink({
    sha256: (text) => createHash('sha256').update(text).digest('hex'),
    useGETForHashedQueries: true,
  }).concat(http()),
);
for (const round of [1, 2]) {
  const result = await persisted.query({
    query: PERSISTED,
    variables: { code: codes[1] },
    fetchPolicy: 'network-only',
  });
  check(result.data[options.prefix].totalCount === 1, `persisted query, round ${round}`, result);
}
const shapes = sent.map((request) => `${request.method} ${request.hasQuery ? 'text' : 'hash'} ${request.status}`);
check(
  JSON.stringify(shapes) ===
    JSON.stringify(['GET hash 404', 'POST text 200', 'GET hash 200']),
  'the hash alone is tried first, the text sent once, the hash alone then suffices',
  shapes,
);

// The whole list, two at a time, through fetchMore and the Relay pagination policy.
const PAGE = gql`
  query Page($first: Int!, $after: String, $filter: StationFilter) {
    stations(first: $first, after: $after, filter: $filter, orderBy: { field: CODE }) {
      edges { cursor node { id code } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
const paged = client(http());
const filter = { bbox: { minLat: 9, maxLat: 15, minLng: 19, maxLng: 21 } };
const watch = paged.watchQuery({ query: PAGE, variables: { first: 2, filter } });
const subscription = watch.subscribe({ error: (error) => check(false, 'the paged query', `${error}`) });
let fetches = 1;
let merged = (await paged.query({ query: PAGE, variables: { first: 2, filter } })).data.stations;
while (merged.pageInfo.hasNextPage) {
  await watch.fetchMore({ variables: { after: merged.pageInfo.endCursor } });
  fetches += 1;
  merged = paged.readQuery({ query: PAGE, variables: { first: 2, filter } }).stations;
}
subscription.unsubscribe();
const listed = merged.edges.map((edge) => edge.node.code);
check(
  JSON.stringify(listed) === JSON.stringify(codes) && fetches === 3,
  'three pages of two hold the five stations in order',
  { listed, fetches },
);
console.log('apollo: mutation, query, persisted GET and pagination all worked');
