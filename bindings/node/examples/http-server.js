'use strict'
// Protecting an OpenAI-style endpoint of a plain `node:http` server with keystead.
//
//   KEYSTEAD_STORE=./keystead.redb PORT=8080 node examples/http-server.js
//   curl -X POST http://127.0.0.1:8080/api/v1/chat/completions \
//     -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
//     -d '{"model": "aignehub/gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hello!"}]}'
const http = require('node:http')
const { KeyStore } = require('..') // in an application: require('keystead')

/**
 * Checks the request's `Authorization: Bearer <key>` header. Answers a refused request itself
 * (401 / 403 / 400 with `WWW-Authenticate`, as core says) and returns null; otherwise returns
 * the key's info. Verification is synchronous, in memory and never writes to the store.
 */
function authenticate(store, req, res, scopes) {
  const check = store.verifyHeader(req.headers.authorization, { scopes })
  if (check.ok) return check.key
  res.writeHead(check.httpStatus, {
    'Content-Type': 'application/json',
    'WWW-Authenticate': check.wwwAuthenticate,
  })
  res.end(JSON.stringify({ error: { code: check.code, message: `API key ${check.code}` } }))
  return null
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = []
    req.on('data', (chunk) => chunks.push(chunk))
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')))
      } catch (err) {
        reject(err)
      }
    })
    req.on('error', reject)
  })
}

function sendJson(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' })
  res.end(JSON.stringify(body))
}

/** The server: one protected route, `POST /api/v1/chat/completions` (scope chat:completions). */
function createServer(store) {
  return http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost')
    if (req.method !== 'POST' || url.pathname !== '/api/v1/chat/completions') {
      return sendJson(res, 404, { error: { code: 'not_found', message: 'no such route' } })
    }
    const key = authenticate(store, req, res, ['chat:completions'])
    if (!key) return
    let body
    try {
      body = await readJson(req)
    } catch {
      return sendJson(res, 400, { error: { code: 'bad_json', message: 'invalid JSON body' } })
    }
    const last = body.messages?.at(-1)?.content ?? ''
    sendJson(res, 200, {
      object: 'chat.completion',
      model: body.model,
      choices: [{ index: 0, message: { role: 'assistant', content: `You said: ${last}` } }],
      apiKey: { id: key.id, name: key.name }, // the key's public id, never the key itself
    })
  })
}

module.exports = { authenticate, createServer }

if (require.main === module) {
  const store = KeyStore.open(process.env.KEYSTEAD_STORE || 'keystead.redb')
  const server = createServer(store).listen(Number(process.env.PORT || 8080), '127.0.0.1', () =>
    console.log(`listening on http://127.0.0.1:${server.address().port}`),
  )
  const stop = () => server.close(() => store.close())
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}
