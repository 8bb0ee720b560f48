// The GraphQL-over-HTTP conformance audits of the `graphql-http` package (the reference
// implementation's own checks of https://graphql.github.io/graphql-over-http/draft/) against a
// running stations-api. Started by api/tests/api/clients.rs, which owns the server.
//
//   node audit.mjs --url http://127.0.0.1:PORT/graphql
//
// Prints every audit with its level and outcome, then a summary per level; exits 1 if any
// audit fails, whatever its level: MUST and SHOULD are the specification, and every MAY audit
// is something this server chooses to do (GET for queries, 400 for malformed parameters).

import { parseArgs } from 'node:util';
import { serverAudits } from 'graphql-http';

const { values: options } = parseArgs({ options: { url: { type: 'string' } } });
if (!options.url) {
  console.error('usage: audit.mjs --url URL');
  process.exit(2);
}

const results = await Promise.all(serverAudits({ url: options.url }).map(({ fn }) => fn()));
const tally = { MUST: [0, 0], SHOULD: [0, 0], MAY: [0, 0] };
const failures = [];
for (const result of results) {
  const level = result.name.split(' ')[0];
  tally[level][1] += 1;
  if (result.status === 'ok') {
    tally[level][0] += 1;
    console.log(`ok    ${result.id} ${result.name}`);
  } else {
    let body = '';
    try {
      body = (await result.response.text()).slice(0, 300);
    } catch {
      // The audit already read the body.
    }
    const line = `FAIL  ${result.id} ${result.name}: ${result.reason} (HTTP ${result.response.status}` +
      `, content-type ${result.response.headers.get('content-type')}) ${body}`;
    failures.push(line);
    console.log(line);
  }
}
console.log(
  Object.entries(tally)
    .map(([level, [passed, total]]) => `${level} ${passed}/${total}`)
    .join(', '),
);
if (failures.length > 0) {
  console.error(`${failures.length} audit(s) failed:\n${failures.join('\n')}`);
  process.exit(1);
}
