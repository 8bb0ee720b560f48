// The GraphiQL IDE that stations-api serves at GET /graphql. Everything it loads, including
// the Monaco editor's workers and fonts, is bundled here and served by the API itself.
import React from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import 'graphiql/setup-workers/vite';
import 'graphiql/style.css';
import './ide.css';

// Opens in the first tab for a new user: a page of stations, and how to ask for the next one.
const EXAMPLE_QUERY = `# Welcome to stations-api. Press the run button (or Ctrl-Enter).
# For the next page, pass pageInfo.endCursor as \`after\`.
query FirstStations {
  stations(first: 10, orderBy: { field: NAME, direction: ASC }) {
    totalCount
    edges {
      cursor
      node { id code name lat lng elevationM }
    }
    pageInfo { hasNextPage endCursor }
  }
}
`;

// Same origin as the page, so the Content-Security-Policy's connect-src 'self' allows it.
// Subscriptions go over a WebSocket to the same path (graphql-transport-ws); the headers typed
// in the IDE's Headers tab, an Authorization token among them, travel in connection_init.
const endpoint = new URL('/graphql', window.location.href);
const socket = new URL(endpoint);
socket.protocol = endpoint.protocol === 'https:' ? 'wss:' : 'ws:';
const fetcher = createGraphiQLFetcher({ url: endpoint.href, subscriptionUrl: socket.href });

createRoot(document.getElementById('graphiql')).render(
  <React.StrictMode>
    <GraphiQL fetcher={fetcher} defaultQuery={EXAMPLE_QUERY} defaultEditorToolsVisibility={false} />
  </React.StrictMode>,
);
