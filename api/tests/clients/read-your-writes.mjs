// Apollo Client and urql reading their own writes through a server whose queries go to a
// standby that has not replayed them (replay paused by api/tests/api/standbys.rs, which owns
// the server and the databases): with the link or exchange of docs/api.md, which sends back the
// token of the latest mutation, the write is read; without it, the standby's older data is.
//
//   node read-your-writes.mjs --url http://127.0.0.1:PORT/graphql

import { parseArgs } from 'node:util';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { Client, fetchExchange } from '@urql/core';
import { map as rxMap } from 'rxjs';
import { map, pipe } from 'wonka';
import { check } from './common.mjs';

const { values: options } = parseArgs({ options: { url: { type: 'string' } } });
if (!options.url) {
  console.error('usage: read-your-writes.mjs --url URL');
  process.exit(2);
}

const CREATE = gql`
  mutation Create($input: CreateStationInput!) { createStation(input: $input) { id code } }
`;
const COUNT = gql`
  query Count($code: String) { stations(filter: { code: $code }) { totalCount } }
`;
const input = (code) => ({ input: { code, name: code, lat: 1, lng: 2 } });

/** The latest of two tokens: of one cluster, the larger string is the later write. */
const later = (a, b) => (!a || (b && b > a) ? b : a);

// Apollo Client: the link of docs/api.md.
let apolloToken;
const readYourWritesLink = new ApolloLink((operation, forward) => {
  if (apolloToken) {
    operation.extensions.readYourWrites = apolloToken;
  }
  return forward(operation).pipe(
    rxMap((result) => {
      apolloToken = later(apolloToken, result.extensions?.readYourWrites);
      return result;
    }),
  );
});
const apollo = (link) =>
  new ApolloClient({
    link: link.concat(new HttpLink({ uri: options.url })),
    cache: new InMemoryCache(),
    defaultOptions: { query: { fetchPolicy: 'network-only' } },
  });
const withLink = apollo(readYourWritesLink);
await withLink.mutate({ mutation: CREATE, variables: input('APRYW') });
check(typeof apolloToken === 'string' && apolloToken.length === 40, 'Apollo: the mutation answered a token', apolloToken);
const withoutLink = apollo(new ApolloLink((operation, forward) => forward(operation)));
const stale = await withoutLink.query({ query: COUNT, variables: { code: 'APRYW' } });
check(stale.data.stations.totalCount === 0, 'Apollo without the link reads the standby, which lacks the write', stale.data);
const fresh = await withLink.query({ query: COUNT, variables: { code: 'APRYW' } });
check(fresh.data.stations.totalCount === 1, 'Apollo with the link reads its write', fresh.data);

// urql: the exchange of docs/api.md.
let urqlToken;
const readYourWritesExchange = ({ forward }) => (operations$) =>
  pipe(
    operations$,
    map((operation) =>
      urqlToken
        ? { ...operation, extensions: { ...operation.extensions, readYourWrites: urqlToken } }
        : operation,
    ),
    forward,
    map((result) => {
      urqlToken = later(urqlToken, result.extensions?.readYourWrites);
      return result;
    }),
  );
const urql = (exchanges) => new Client({ url: options.url, exchanges, requestPolicy: 'network-only' });
const withExchange = urql([readYourWritesExchange, fetchExchange]);
const created = await withExchange.mutation(CREATE, input('URRYW')).toPromise();
check(!created.error && typeof urqlToken === 'string', 'urql: the mutation answered a token', created.error ?? urqlToken);
const staleUrql = await urql([fetchExchange]).query(COUNT, { code: 'URRYW' }).toPromise();
check(staleUrql.data?.stations.totalCount === 0, 'urql without the exchange reads the standby, which lacks the write', staleUrql.data);
const freshUrql = await withExchange.query(COUNT, { code: 'URRYW' }).toPromise();
check(freshUrql.data?.stations.totalCount === 1, 'urql with the exchange reads its write', freshUrql.data);
console.log('read-your-writes: Apollo Client and urql read their own writes');
