// The graphql-ws library's own client (what Apollo Client's GraphQLWsLink and urql use for
// subscriptions) against a running stations-api: subscribe, have a mutation made by another
// client, receive the change. Started by api/tests/api/clients.rs, which owns the server.
//
//   node graphql-ws.mjs --url http://127.0.0.1:PORT/graphql --token TOKEN

import { parseArgs } from 'node:util';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { check, untilLive } from './common.mjs';

const { values: options } = parseArgs({
  options: { url: { type: 'string' }, token: { type: 'string' } },
});
if (!options.url || !options.token) {
  console.error('usage: graphql-ws.mjs --url URL --token TOKEN');
  process.exit(2);
}
const authorization = `Bearer ${options.token}`;
const client = createClient({
  url: options.url.replace(/^http/, 'ws'),
  webSocketImpl: WebSocket,
  connectionParams: { authorization },
  retryAttempts: 0,
});

// Subscribing before the server listens would bring a RESYNC first, when it starts to.
await untilLive(options.url, 0);
// Events as they arrive, and a way to wait for the next one.
const events = [];
let failure;
let wake = () => {};
client.subscribe(
  { query: 'subscription { stationChanged { kind station { code } } }' },
  {
    next: (event) => {
      events.push(event);
      wake();
    },
    error: (error) => {
      failure = error;
      wake();
    },
    complete: () => {},
  },
);
/** The `count`-th change the subscriber received (from 1), waiting up to 5 s for it. */
async function change(count) {
  const deadline = Date.now() + 5000;
  while (events.length < count) {
    if (failure) throw failure;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no change number ${count} within 5 s`);
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, left);
    });
  }
  return events[count - 1].data.stationChanged;
}
await untilLive(options.url, 1);

const mutate = (query) =>
  fetch(options.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization },
    body: JSON.stringify({ query }),
  }).then((response) => response.json());
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const created = await mutate('mutation { createStation(input: { code: "WS1", name: "Over graphql-ws", lat: 1, lng: 2 }) { id } }');
check(created.data?.createStation?.id, 'the mutation', created);
const first = await change(1);
check(same(first, { kind: 'CREATED', station: { code: 'WS1' } }), 'the subscriber saw the station created', first);

await mutate(`mutation { deleteStation(id: "${created.data.createStation.id}") }`);
const second = await change(2);
check(same(second, { kind: 'DELETED', station: null }), 'then saw it deleted', second);
await client.dispose();
console.log('graphql-ws: subscription delivered both changes');
