// Helpers shared by the client scripts.

/** Stops the script with `what` and `detail` unless `condition` holds. */
export function check(condition, what, detail) {
  if (!condition) {
    console.error(`FAILED: ${what}\n${JSON.stringify(detail, null, 2)}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

/**
 * A `fetch` that records, for each request, its method, whether it carried the document's text
 * (in the URL or the body) and the status of the answer.
 */
export function recordingFetch(sent) {
  return async (input, init = {}) => {
    const url = new URL(typeof input === 'string' ? input : input.url);
    const method = (init.method ?? 'GET').toUpperCase();
    const body = typeof init.body === 'string' ? JSON.parse(init.body) : {};
    const hasQuery = url.searchParams.has('query') || typeof body.query === 'string';
    const response = await fetch(input, init);
    sent.push({ method, hasQuery, status: response.status });
    return response;
  };
}

/**
 * Resolves once the server behind `graphqlUrl` listens for changes and runs at least
 * `subscriptions` subscriptions that receive them, as its /metrics say: from then on a change
 * reaches them, where a pause would only make it likely. Fails after 15 s.
 */
export async function untilLive(graphqlUrl, subscriptions) {
  const metricsUrl = new URL('/metrics', graphqlUrl);
  const value = (text, name) => Number(text.match(new RegExp(`^${name} (\\d+)$`, 'm'))?.[1] ?? 0);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const text = await (await fetch(metricsUrl)).text();
    if (value(text, 'stations_live_listening') === 1 && value(text, 'stations_live_subscriptions') >= subscriptions) return;
    if (Date.now() > deadline) throw new Error(`not live after 15 s:\n${text}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
