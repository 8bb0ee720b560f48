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
