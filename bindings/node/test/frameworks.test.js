'use strict'
// keystead.express and keystead.fastify against the real frameworks, over loopback HTTP
// (127.0.0.1, port 0), with one table of cases for both.
const test = require('node:test')
const assert = require('node:assert/strict')
const { once } = require('node:events')
const http = require('node:http')
const { Writable } = require('node:stream')

const Express = require('express')
// Express 4 too (npm alias express4 -> express@4): still the most deployed major.
const Express4 = require('express4')
const EXPRESS = { express: Express, express4: Express4 }
const FRAMEWORKS = ['express', 'express4', 'fastify']
const Fastify = require('fastify')

const keystead = require('..')
const { KeyStore } = keystead
const { tempStorePath } = require('./helpers/common')

const CHAT = 'chat:completions'
// A hang guard only (a middleware that waited for a body would hang), never a speed check.
const HANG_GUARD = { timeout: 120_000 }

/** The keys of the cases, in a fresh store; `secrets` are every plaintext key made. */
function makeStore() {
  const store = KeyStore.open(tempStorePath())
  const good = store.create({ name: 'dev-server-integration', scopes: [CHAT] })
  const both = store.create({ name: 'chat-and-images', scopes: [CHAT, 'images'] })
  const noScope = store.create({ name: 'embeddings-only', scopes: ['embeddings'] })
  const revoked = store.create({ name: 'revoked', scopes: [CHAT] })
  store.revoke(revoked.info.id)
  const other = KeyStore.open(tempStorePath())
  const foreign = other.create({ name: 'elsewhere', scopes: [CHAT] }).key
  other.close()
  const keys = { good, both, noScope, revoked }
  const secrets = [good.key, both.key, noScope.key, revoked.key, foreign]
  return { store, keys, foreign, secrets }
}

// The same application in both frameworks:
//   POST /v1/chat/completions  needs CHAT (the app-wide scope)
//   POST /v1/images            needs CHAT and, for this route, `images`
//   GET  /healthz              public
// Each protected route answers with the key it got on the request.
const seen = (key) => ({ id: key.id, name: key.name, scopes: key.scopes })

function expressApp(options, make = Express) {
  const app = make()
  app.get('/healthz', (req, res) => res.json({ ok: true }))
  app.use(keystead.express(options))
  app.post('/v1/chat/completions', (req, res) => res.json(seen(req.keystead)))
  app.post('/v1/images', keystead.express.require('images'), (req, res) =>
    res.json(seen(req.keystead)),
  )
  // The application's error handler: operational failures other than 503 reach it.
  app.use((err, req, res, next) => res.status(500).json({ failure: err.code ?? 'unknown' }))
  return app
}

async function fastifyApp(options, logStream) {
  // forceCloseConnections: close() ends requests still in flight (a test that failed).
  const app = Fastify({ logger: { level: 'trace', stream: logStream }, forceCloseConnections: true })
  await app.register(keystead.fastify, options)
  app.get('/healthz', { config: { keystead: false } }, async () => ({ ok: true }))
  app.post('/v1/chat/completions', async (request) => seen(request.keystead))
  app.post('/v1/images', { config: { keystead: { scopes: ['images'] } } }, async (request) =>
    seen(request.keystead),
  )
  app.setErrorHandler(async (err, request, reply) =>
    reply.code(500).send({ failure: err.code ?? 'unknown' }),
  )
  return app
}

/** Collects what a framework logs, as text. */
function logSink() {
  const lines = []
  return {
    lines,
    // Express: a pino-style logger object given as `logger`.
    logger: {
      debug: (fields, message) => lines.push(JSON.stringify({ level: 'debug', fields, message })),
      warn: (fields, message) => lines.push(JSON.stringify({ level: 'warn', fields, message })),
    },
    // Fastify: its pino logger writes here.
    stream: new Writable({
      write(chunk, encoding, done) {
        lines.push(String(chunk))
        done()
      },
    }),
  }
}

/** Starts `framework`'s app on 127.0.0.1:0; returns its base URL and a stop function. */
async function start(framework, options, sink) {
  if (framework in EXPRESS) {
    const server = http.createServer(expressApp({ ...options, logger: sink.logger }, EXPRESS[framework]))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return {
      url: `http://127.0.0.1:${server.address().port}`,
      stop: async () => {
        server.closeAllConnections()
        server.close()
        await once(server, 'close')
      },
    }
  }
  const app = await fastifyApp(options, sink.stream)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  return { url, stop: () => app.close() }
}

async function call(base, method, path, authorization) {
  const headers = { 'content-type': 'application/json' }
  if (authorization !== undefined) headers.authorization = authorization
  const res = await fetch(base + path, {
    method,
    headers,
    body: method === 'POST' ? JSON.stringify({ model: 'm', messages: [] }) : undefined,
  })
  return { status: res.status, headers: res.headers, body: await res.json() }
}

const INVALID = 'Bearer error="invalid_token"'
// [what, method, path, authorization(keys), status, WWW-Authenticate, code or key name]
const CASES = [
  ['a key', 'POST', '/v1/chat/completions', (k) => `Bearer ${k.good.key}`, 200, null, 'dev-server-integration'],
  ['no key', 'POST', '/v1/chat/completions', () => undefined, 401, 'Bearer', 'missing'],
  ['an unknown key', 'POST', '/v1/chat/completions', (k, f) => `Bearer ${f}`, 401, INVALID, 'not_found'],
  ['a revoked key', 'POST', '/v1/chat/completions', (k) => `Bearer ${k.revoked.key}`, 401, INVALID, 'revoked'],
  ['a malformed key', 'POST', '/v1/chat/completions', (k) => `Bearer ${k.good.key.slice(0, -1)}`, 400, 'Bearer error="invalid_request"', 'malformed'],
  ['another scheme', 'POST', '/v1/chat/completions', () => 'Basic dXNlcjpwYXNz', 401, 'Bearer', 'missing'],
  ['a key without the app-wide scope', 'POST', '/v1/chat/completions', (k) => `Bearer ${k.noScope.key}`, 403, `Bearer error="insufficient_scope", scope="${CHAT}"`, 'insufficient_scope'],
  ['a key without the route scope', 'POST', '/v1/images', (k) => `Bearer ${k.good.key}`, 403, `Bearer error="insufficient_scope", scope="${CHAT} images"`, 'insufficient_scope'],
  ['a key with the route scope', 'POST', '/v1/images', (k) => `Bearer ${k.both.key}`, 200, null, 'chat-and-images'],
  ['no key on a public route', 'GET', '/healthz', () => undefined, 200, null, null],
]

for (const framework of FRAMEWORKS) {
  test(`${framework}: the shared cases over loopback HTTP`, HANG_GUARD, async (t) => {
    const { store, keys, foreign, secrets } = makeStore()
    const sink = logSink()
    const server = await start(framework, { store, scopes: [CHAT] }, sink)
    t.after(async () => {
      await server.stop()
      store.close()
    })

    for (const [what, method, path, auth, status, www, expected] of CASES) {
      const res = await call(server.url, method, path, auth(keys, foreign))
      const label = `${framework}: ${what}`
      assert.equal(res.status, status, label)
      assert.equal(res.headers.get('www-authenticate'), www, label)
      if (status === 200 && expected !== null) {
        // The key's info reached the handler.
        assert.equal(res.body.name, expected, label)
        const key = expected === 'dev-server-integration' ? keys.good : keys.both
        assert.equal(res.body.id, key.info.id, label)
        assert.deepEqual(res.body.scopes, key.info.scopes, label)
      } else if (status !== 200) {
        assert.equal(res.body.error.code, expected, label)
        assert.equal(typeof res.body.error.message, 'string', label)
      }
      for (const secret of secrets) assert.ok(!JSON.stringify(res.body).includes(secret), label)
    }

    // Refusals were logged (debug: code and key id) and nothing logged holds a key.
    const logged = sink.lines.join('\n')
    assert.match(logged, /insufficient_scope/)
    assert.ok(logged.includes(keys.noScope.info.id), 'the refused key is named by its id')
    for (const secret of secrets) {
      assert.ok(!logged.includes(secret), `${framework} logged a key`)
      // Nor its secret part alone.
      assert.ok(!logged.includes(secret.slice(-16)), `${framework} logged part of a key`)
    }
  })

  test(`${framework}: an app-wide and a route check count one use`, HANG_GUARD, async (t) => {
    const { store, keys } = makeStore()
    const server = await start(framework, { store, scopes: [CHAT] }, logSink())
    t.after(async () => {
      await server.stop()
      store.close()
    })
    assert.equal((await call(server.url, 'POST', '/v1/images', `Bearer ${keys.both.key}`)).status, 200)
    store.flush()
    assert.equal(store.get(keys.both.info.id).useCount, 1)
  })

  test(`${framework}: realm is added to core's challenge`, HANG_GUARD, async (t) => {
    const { store, keys, foreign } = makeStore()
    const server = await start(framework, { store, scopes: CHAT, realm: 'example api' }, logSink())
    t.after(async () => {
      await server.stop()
      store.close()
    })
    const expect = [
      [undefined, 'Bearer realm="example api"'],
      [`Bearer ${foreign}`, 'Bearer realm="example api", error="invalid_token"'],
      [
        `Bearer ${keys.noScope.key}`,
        `Bearer realm="example api", error="insufficient_scope", scope="${CHAT}"`,
      ],
    ]
    for (const [auth, www] of expect) {
      const res = await call(server.url, 'POST', '/v1/chat/completions', auth)
      assert.equal(res.headers.get('www-authenticate'), www)
    }
  })

  test(`${framework}: two Authorization fields are malformed, not "the first one wins"`, HANG_GUARD, async (t) => {
    const { store, keys } = makeStore()
    const server = await start(framework, { store, scopes: [CHAT] }, logSink())
    t.after(async () => {
      await server.stop()
      store.close()
    })
    // Node keeps only the first Authorization field in req.headers; a proxy that judged the
    // last one would disagree with the app about who is calling.
    const { port } = new URL(server.url)
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/v1/chat/completions',
      // An array keeps both fields; Node then adds no Host field by itself.
      headers: [
        'host', `127.0.0.1:${port}`,
        'content-type', 'application/json',
        'authorization', `Bearer ${keys.good.key}`,
        'authorization', `Bearer ${keys.revoked.key}`,
      ],
    })
    req.end('{}')
    const [res] = await once(req, 'response')
    res.resume()
    assert.equal(res.statusCode, 400)
    assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_request"')
  })

  test(`${framework}: the answer does not wait for the body`, HANG_GUARD, async (t) => {
    const { store } = makeStore()
    const server = await start(framework, { store, scopes: [CHAT] }, logSink())
    t.after(async () => {
      await server.stop()
      store.close()
    })
    // Announce 1 MB, send 10 bytes and stop: a middleware that read the body would hang
    // until the test's timeout.
    const { port } = new URL(server.url)
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json', 'content-length': 1_000_000 },
    })
    req.on('error', () => {})
    t.after(() => req.destroy())
    req.flushHeaders()
    req.write('{"model":"')
    const [res] = await once(req, 'response')
    assert.equal(res.statusCode, 401)
    assert.equal(res.headers['www-authenticate'], 'Bearer')
    res.resume()
    req.destroy()
  })
}

/**
 * A real `KEYSTEAD_UNAVAILABLE` error, as verify throws it while a PostgreSQL store is down:
 * from opening a `postgres://` location on a loopback port nothing listens on. Port 1 (a
 * privileged port no test uses, as core's and the CLI's tests do), not a port found free and
 * released: another test process's server, listening on port 0 meanwhile, could take that one.
 */
async function unavailableError() {
  try {
    KeyStore.open('postgres://keystead@127.0.0.1:1/keystead?connect_timeout=5')
  } catch (err) {
    return err
  }
  throw new Error('opening a PostgreSQL store on a closed port succeeded')
}

for (const framework of FRAMEWORKS) {
  test(`${framework}: an unreachable store is 503 with Retry-After, and the app lives on`, HANG_GUARD, async (t) => {
    const unavailable = await unavailableError()
    assert.equal(unavailable.code, 'KEYSTEAD_UNAVAILABLE')
    const { store, keys, secrets } = makeStore()
    // The store as it behaves during an outage: verify throws the error core throws.
    let down = true
    const outage = {
      verify: (...args) => store.verify(...args),
      verifyHeader: (...args) => {
        if (down) throw unavailable
        return store.verifyHeader(...args)
      },
    }
    const sink = logSink()
    // Express with an explicit Retry-After, Fastify with the default (5 s).
    const retry = framework !== 'fastify' ? { retryAfter: 7 } : {}
    const server = await start(framework, { store: outage, scopes: [CHAT], ...retry }, sink)
    t.after(async () => {
      await server.stop()
      store.close()
    })
    const res = await call(server.url, 'POST', '/v1/chat/completions', `Bearer ${keys.good.key}`)
    assert.equal(res.status, 503)
    assert.equal(res.headers.get('retry-after'), framework !== 'fastify' ? '7' : '5')
    assert.equal(res.headers.get('www-authenticate'), null)
    assert.deepEqual(Object.keys(res.body), ['error'])
    assert.equal(res.body.error.code, 'unavailable')
    assert.ok(!JSON.stringify(res.body).includes('at '), 'no stack in the answer')

    const logged = sink.lines.join('\n')
    assert.match(logged, /KEYSTEAD_UNAVAILABLE/)
    for (const secret of secrets) assert.ok(!logged.includes(secret))

    down = false
    const after = await call(server.url, 'POST', '/v1/chat/completions', `Bearer ${keys.good.key}`)
    assert.equal(after.status, 200)
  })

  test(`${framework}: other store errors reach the application's error handler`, HANG_GUARD, async (t) => {
    const { store, keys } = makeStore()
    const server = await start(framework, { store, scopes: [CHAT] }, logSink())
    t.after(() => server.stop())
    store.close()
    const res = await call(server.url, 'POST', '/v1/chat/completions', `Bearer ${keys.good.key}`)
    assert.equal(res.status, 500)
    assert.deepEqual(res.body, { failure: 'KEYSTEAD_CLOSED' })
  })
}

test('express: scopes per route without an app-wide middleware, and the ways to misuse it', HANG_GUARD, async (t) => {
  const { store, keys } = makeStore()
  const auth = keystead.express({ store })
  const app = Express()
  app.post('/chat', auth.require(CHAT), (req, res) => res.json(seen(req.keystead)))
  app.post('/images', auth.require([CHAT], 'images'), (req, res) => res.json(seen(req.keystead)))
  app.post('/orphan', keystead.express.require(CHAT), (req, res) => res.json({}))
  // What a later check trusts is what core returned, not the app's copy of the key's scopes.
  app.post(
    '/tampered',
    keystead.express({ store }),
    (req, res, next) => {
      req.keystead.scopes.push('images')
      next()
    },
    keystead.express.require('images'),
    (req, res) => res.json({}),
  )
  app.use((err, req, res, next) => res.status(500).json({ failure: err.code, message: err.message }))
  const server = http.createServer(app).listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(async () => {
    server.closeAllConnections()
    server.close()
    store.close()
  })
  const base = `http://127.0.0.1:${server.address().port}`
  let res = await call(base, 'POST', '/chat', `Bearer ${keys.good.key}`)
  assert.equal(res.status, 200)
  assert.equal(res.body.name, 'dev-server-integration')
  res = await call(base, 'POST', '/images', `Bearer ${keys.good.key}`)
  assert.equal(res.status, 403)
  assert.equal(res.headers.get('www-authenticate'), `Bearer error="insufficient_scope", scope="${CHAT} images"`)
  res = await call(base, 'POST', '/tampered', `Bearer ${keys.good.key}`)
  assert.equal(res.status, 403)
  assert.equal(res.headers.get('www-authenticate'), 'Bearer error="insufficient_scope", scope="images"')
  // keystead.express.require needs a keystead.express middleware before it.
  res = await call(base, 'POST', '/orphan', `Bearer ${keys.good.key}`)
  assert.equal(res.status, 500)
  assert.equal(res.body.failure, 'KEYSTEAD_INVALID_ARGUMENT')
  assert.match(res.body.message, /no keystead\.express\(\{ store \}\) middleware ran/)
})

test('bad options are refused at setup, with KEYSTEAD_INVALID_ARGUMENT', HANG_GUARD, async (t) => {
  const { store } = makeStore()
  t.after(() => store.close())
  const bad = { code: 'KEYSTEAD_INVALID_ARGUMENT' }
  assert.throws(() => keystead.express(), { ...bad, message: /options must be an object/ })
  assert.throws(() => keystead.express({}), { ...bad, message: /options\.store must be a KeyStore/ })
  assert.throws(() => keystead.express({ store: 'keystead.redb' }), bad)
  assert.throws(() => keystead.express({ store, scopes: [1] }), { ...bad, message: /scopes must be/ })
  // Core's rule for a scope, applied now rather than on the first request.
  assert.throws(() => keystead.express({ store, scopes: ['no spaces'] }), bad)
  assert.throws(() => keystead.express({ store }).require('no spaces'), bad)
  assert.throws(() => keystead.express({ store, realm: 'a"b' }), { ...bad, message: /realm/ })
  assert.throws(() => keystead.express({ store, retryAfter: -1 }), { ...bad, message: /retryAfter/ })
  assert.throws(() => keystead.express({ store, logger: console.log }), { ...bad, message: /logger/ })

  const app = Fastify()
  await assert.rejects(async () => {
    await app.register(keystead.fastify, { scopes: [CHAT] })
    await app.ready()
  }, bad)
  const other = Fastify()
  await other.register(keystead.fastify, { store })
  // A route's scopes are checked when the route is added.
  assert.throws(
    () => other.get('/x', { config: { keystead: { scopes: ['no spaces'] } } }, async () => ({})),
    bad,
  )
  assert.throws(
    () => other.get('/y', { config: { keystead: 'public' } }, async () => ({})),
    { ...bad, message: /must be false \(public\) or \{ scopes/ },
  )
  await other.close()
})

test('fastify: the plugin applies to the whole instance: earlier routes and sibling plugins too', HANG_GUARD, async (t) => {
  const { store, keys } = makeStore()
  const app = Fastify()
  app.get('/before', async (request) => ({ name: request.keystead?.name ?? null }))
  await app.register(keystead.fastify, { store })
  await app.register(async (child) => {
    child.get('/child', async (request) => ({ name: request.keystead?.name ?? null }))
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.after(async () => {
    await app.close()
    store.close()
  })
  const base = `http://127.0.0.1:${app.server.address().port}`
  assert.equal((await call(base, 'GET', '/child')).status, 401)
  assert.equal((await call(base, 'GET', '/before')).status, 401, 'a route added before the plugin')
  const res = await call(base, 'GET', '/child', `Bearer ${keys.good.key}`)
  assert.equal(res.status, 200)
  assert.equal(res.body.name, 'dev-server-integration')
})

test('fastify: an invalid route option added before the plugin loaded fails its requests with 500', HANG_GUARD, async (t) => {
  const { store, keys } = makeStore()
  const app = Fastify()
  app.register(keystead.fastify, { store }) // not awaited: the route below comes first
  app.get('/bad', { config: { keystead: { scopes: ['no spaces'] } } }, async () => ({}))
  await app.ready()
  t.after(async () => {
    await app.close()
    store.close()
  })
  const res = await app.inject({ url: '/bad', headers: { authorization: `Bearer ${keys.good.key}` } })
  assert.equal(res.statusCode, 500)
  assert.equal(res.json().code, 'KEYSTEAD_INVALID_ARGUMENT')
})
