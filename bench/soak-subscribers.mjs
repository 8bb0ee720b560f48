// The subscribers of bench/run's soak: N sockets through the load balancer, each subscribed to
// stationChanged, reconnecting (after 200 ms) whenever a socket closes, for the whole run.
// Prints one JSON line at the end: events, RESYNCs, reconnects, and how long the longest gap
// without a subscribed socket lasted.
//
//   node bench/soak-subscribers.mjs --url http://127.0.0.1:P --subscribers N --duration SECONDS
//                                   --token TOKEN

import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const { values: options } = parseArgs({
  options: {
    url: { type: 'string' },
    subscribers: { type: 'string', default: '50' },
    duration: { type: 'string', default: '60' },
    token: { type: 'string', default: '' },
  },
});
const endAt = Date.now() + Number(options.duration) * 1000;
const authorization = options.token ? `Bearer ${options.token}` : undefined;
const totals = { events: 0, resyncs: 0, reconnects: 0, refusals: 0, longestGapMs: 0 };

function subscriber() {
  let closedAt = null;
  const connect = () => {
    if (Date.now() >= endAt) return;
    const socket = new WebSocket(options.url.replace(/^http/, 'ws') + '/graphql', 'graphql-transport-ws');
    socket.on('error', () => {});
    socket.on('open', () =>
      socket.send(JSON.stringify({ type: 'connection_init', payload: authorization ? { authorization } : {} })),
    );
    socket.on('message', (data) => {
      const message = JSON.parse(data);
      if (message.type === 'connection_ack') {
        socket.send(JSON.stringify({
          id: '1',
          type: 'subscribe',
          payload: { query: 'subscription { stationChanged { kind id } }' },
        }));
        if (closedAt !== null) {
          totals.longestGapMs = Math.max(totals.longestGapMs, Date.now() - closedAt);
          closedAt = null;
        }
      } else if (message.type === 'next') {
        if (message.payload.errors) totals.refusals += 1;
        else if (message.payload.data?.stationChanged?.kind === 'RESYNC') totals.resyncs += 1;
        else totals.events += 1;
      }
    });
    socket.on('close', () => {
      if (Date.now() >= endAt) return;
      closedAt ??= Date.now();
      totals.reconnects += 1;
      setTimeout(connect, 200);
    });
    const stop = setTimeout(() => socket.close(1000, 'done'), Math.max(0, endAt - Date.now()));
    socket.on('close', () => clearTimeout(stop));
  };
  connect();
}

for (let index = 0; index < Number(options.subscribers); index += 1) subscriber();
setTimeout(() => {
  console.log(JSON.stringify(totals));
  process.exit(0);
}, Number(options.duration) * 1000 + 1000);
