// Package api serves LightShark-mini's HTTP interface: the original tool's
// endpoints (/api/health, /api/live, /api/history, /api/stats and the
// /api/stream WebSocket) with their JSON field names kept, and the new ones
// (/api/flows, /api/flows/{id}, /api/series, /metrics, /api/openapi.json),
// on a net/http ServeMux with method patterns. Every response is JSON (or the
// Prometheus text format, or NDJSON when asked for); errors are
// {"error": "..."} with a 4xx or 5xx status.
//
// It reads the live view (pkg/live) and the history through the Store
// interface it defines; pkg/apiserver passes in the concrete store. It must
// never import store, ipc, capture, decode, flow or capfilter (LAYOUT.md).
//
// Security: an optional bearer token (compared in constant time) is
// required for everything but /api/health, /api/openapi.json and the
// dashboard's static files; an optional list of client CIDRs is enforced
// for everything; CORS headers are sent only to configured origins, and
// the WebSocket checks the Origin; NewHTTPServer sets timeouts and header
// limits, and the handler bounds query strings and refuses request bodies.
package api
