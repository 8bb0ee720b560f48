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
const events = [];
const finished = new Promise((resolve, reject) => {
  client.subscribe(
    { query: 'subscription { stationChanged { kind station { code } } }' },
    {
      next: (event) => {
        events.push(event);
        if (events.length === 2) resolve();
      },
      error: reject,
      complete: resolve,
    },
  );
});
await untilLive(options.url, 1);

const mutate = (query) =>
  fetch(options.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization },
    body: JSON.stringify({ query }),
  }).then((response) => response.json());
const created = await mutate('mutation { createStation(input: { code: "WS1", name: "Over graphql-ws", lat: 1, lng: 2 }) { id } }');
check(created.data?.createStation?.id, 'the mutation', created);
await mutate(`mutation { deleteStation(id: "${created.data.createStation.id}") }`);

let timer;
const timeout = new Promise((_, reject) => {
  timer = setTimeout(() => reject(new Error('no events within 5 s')), 5000);
});
await Promise.race([finished, timeout]);
clearTimeout(timer);
check(
  JSON.stringify(events.map((event) => event.data.stationChanged)) ===
    JSON.stringify([
      { kind: 'CREATED', station: { code: 'WS1' } },
      { kind: 'DELETED', station: null },
    ]),
  'the subscriber saw the station created, then deleted',
  events,
);
await client.dispose();
console.log('graphql-ws: subscription delivered both changes');
