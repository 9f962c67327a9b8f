'use strict'
// The examples' servers, started on 127.0.0.1:0 and called exactly as a client would.
const test = require('node:test')
const assert = require('node:assert/strict')
const { once } = require('node:events')
const http = require('node:http')

const { KeyStore } = require('..')
const { tempStorePath } = require('./helpers/common')
const { createServer } = require('../examples/http-server')
const { createApp } = require('../examples/express-server')
const fastifyExample = require('../examples/fastify-server')

const BODY = {
  model: 'aignehub/gpt-3.5-turbo',
  messages: [{ role: 'user', content: 'Hello!' }],
}

async function listen(handler) {
  if (typeof handler.then === 'function') {
    // The Fastify example: an app to start on its own server.
    const app = await handler
    await app.listen({ port: 0, host: '127.0.0.1' })
    return app.server
  }
  const server = handler instanceof http.Server ? handler : http.createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return server
}

function call(server, authorization) {
  const { port } = server.address()
  const headers = { 'Content-Type': 'application/json' }
  if (authorization !== undefined) headers.Authorization = authorization
  return fetch(`http://127.0.0.1:${port}/api/v1/chat/completions`, {
    method: 'POST',
    headers,
    body: JSON.stringify(BODY),
  })
}

for (const [name, make] of [
  ['node:http', (store) => createServer(store)],
  ['express', (store) => createApp(store)],
  ['fastify', (store) => fastifyExample.createApp(store)],
]) {
  test(`${name} example protects POST /api/v1/chat/completions`, async (t) => {
    const store = KeyStore.open(tempStorePath())
    const good = store.create({ name: 'dev-server-integration', scopes: ['chat:completions'] })
    const noScope = store.create({ name: 'embeddings-only', scopes: ['embeddings'] })
    const revoked = store.create({ name: 'revoked', scopes: ['chat:completions'] })
    store.revoke(revoked.info.id)
    // A well-formed key of another store: unknown here.
    const other = KeyStore.open(tempStorePath())
    const foreign = other.create({ name: 'elsewhere', scopes: ['chat:completions'] }).key
    other.close()

    const server = await listen(make(store))
    t.after(async () => {
      server.close()
      await once(server, 'close')
      store.close()
    })

    // 200 with a valid key
    let res = await call(server, `Bearer ${good.key}`)
    assert.equal(res.status, 200)
    const json = await res.json()
    assert.equal(json.model, 'aignehub/gpt-3.5-turbo')
    assert.equal(json.choices[0].message.content, 'You said: Hello!')
    assert.equal(json.apiKey.id, good.info.id)
    assert.ok(!JSON.stringify(json).includes(good.key))

    // 401 with WWW-Authenticate: missing, wrong (unknown) and revoked keys
    res = await call(server, undefined)
    assert.equal(res.status, 401)
    assert.equal(res.headers.get('www-authenticate'), 'Bearer')
    assert.equal((await res.json()).error.code, 'missing')

    res = await call(server, `Bearer ${foreign}`)
    assert.equal(res.status, 401)
    assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token"')
    assert.equal((await res.json()).error.code, 'not_found')

    res = await call(server, `Bearer ${revoked.key}`)
    assert.equal(res.status, 401)
    assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token"')
    assert.equal((await res.json()).error.code, 'revoked')

    // 403 for a key without the required scope
    res = await call(server, `Bearer ${noScope.key}`)
    assert.equal(res.status, 403)
    assert.equal(
      res.headers.get('www-authenticate'),
      'Bearer error="insufficient_scope", scope="chat:completions"',
    )
    assert.equal((await res.json()).error.code, 'insufficient_scope')

    // Not a key at all (typo, other scheme): core answers 400 invalid_request / 401.
    res = await call(server, `Bearer ${good.key.slice(0, -1)}`)
    assert.equal(res.status, 400)
    assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_request"')
    await res.body?.cancel()
    res = await call(server, 'Basic dXNlcjpwYXNz')
    assert.equal(res.status, 401)
    await res.body?.cancel()

    store.flush()
    assert.equal(store.get(good.info.id).useCount, 1)
  })
}
