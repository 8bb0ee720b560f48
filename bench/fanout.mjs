// The fan-out scenario of bench/run: N subscribers of stationChanged spread over the replicas,
// stations created at a steady rate through them in turn, and for every event the time from
// the writing transaction (the station's createdAt, stamped by PostgreSQL) to its arrival here.
// Prints one JSON line: subscribers, events expected and received, events/s, p50/p99 in ms.
//
//   node bench/fanout.mjs --replicas http://127.0.0.1:A,http://127.0.0.1:B --subscribers N
//                         --rate PER_SECOND --duration SECONDS --token TOKEN

import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const { values: options } = parseArgs({
  options: {
    replicas: { type: 'string' },
    subscribers: { type: 'string', default: '100' },
    rate: { type: 'string', default: '20' },
    duration: { type: 'string', default: '10' },
    token: { type: 'string', default: '' },
    run: { type: 'string', default: String(Date.now()) },
  },
});
const replicas = options.replicas.split(',');
const subscribers = Number(options.subscribers);
const rate = Number(options.rate);
const duration = Number(options.duration);
const authorization = options.token ? `Bearer ${options.token}` : undefined;

/** Milliseconds since the epoch, to the microsecond. */
const now = () => performance.timeOrigin + performance.now();

/** An RFC 3339 instant to milliseconds since the epoch, keeping its microseconds. */
function instant(text) {
  const match = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$/.exec(text);
  const whole = Date.parse(match[1] + (match[3] || 'Z'));
  return whole + (match[2] ? Number(`0${match[2]}`) * 1000 : 0);
}

const latencies = [];
let received = 0;

function subscribe(url) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url.replace(/^http/, 'ws') + '/graphql', 'graphql-transport-ws');
    socket.on('error', reject);
    socket.on('open', () =>
      socket.send(JSON.stringify({ type: 'connection_init', payload: authorization ? { authorization } : {} })),
    );
    socket.on('message', (data) => {
      const message = JSON.parse(data);
      if (message.type === 'connection_ack') {
        socket.send(JSON.stringify({
          id: '1',
          type: 'subscribe',
          payload: { query: 'subscription { stationChanged { kind station { createdAt } } }' },
        }));
        resolve(socket);
      } else if (message.type === 'next') {
        const station = message.payload.data?.stationChanged?.station;
        if (station) {
          received += 1;
          latencies.push(now() - instant(station.createdAt));
        }
      } else if (message.type === 'ping') {
        socket.send(JSON.stringify({ type: 'pong' }));
      }
    });
  });
}

const sockets = [];
for (let index = 0; index < subscribers; index += 1) {
  sockets.push(await subscribe(replicas[index % replicas.length]));
}
// Let the last subscriptions register before the first change.
await new Promise((resolve) => setTimeout(resolve, 500));

const total = Math.round(rate * duration);
const started = now();
let sent = 0;
let failed = 0;
while (sent < total) {
  const due = started + (sent * 1000) / rate;
  const wait = due - now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  const replica = replicas[sent % replicas.length];
  const code = `F${options.run.slice(-6)}-${sent}`;
  sent += 1;
  fetch(`${replica}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
    body: JSON.stringify({
      query: `mutation { createStation(input: { code: "${code}", name: "Fan-out", lat: 1, lng: 2 }) { id } }`,
    }),
  }).then((response) => { if (!response.ok) failed += 1; }, () => { failed += 1; });
}
const expected = total * subscribers;
const deadline = now() + 10_000;
while (received < expected && now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const elapsed = (now() - started) / 1000;
for (const socket of sockets) socket.terminate();

latencies.sort((a, b) => a - b);
const percentile = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null;
console.log(JSON.stringify({
  subscribers,
  changes: total,
  failed_writes: failed,
  expected,
  received,
  events_per_s: Math.round(received / elapsed),
  p50_ms: percentile(0.5) && Number(percentile(0.5).toFixed(2)),
  p99_ms: percentile(0.99) && Number(percentile(0.99).toFixed(2)),
}));
