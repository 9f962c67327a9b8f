// A typed CommonJS consumer (this file compiles to CommonJS: no "type": "module" above it).
// Checked by `tsc --noEmit` (npm run typecheck); never run.
import express from 'express'
import Fastify, { type FastifyContextConfig } from 'fastify'
import keystead = require('keystead')
import { KeyStore, type KeyInfo, type VerifiedKey, type KeysteadExpressOptions } from 'keystead'

const store: KeyStore = keystead.KeyStore.open('keystead.redb', { refreshIntervalMs: 500 })
const options: KeysteadExpressOptions = { store, scopes: ['chat:completions'], realm: 'api' }

// Express: app-wide, per route (two ways), and the key on the request.
const app = express()
app.use(keystead.express({ store, scopes: 'chat:completions', retryAfter: 2 }))
app.post('/v1/embeddings', keystead.express.require('embeddings'), (req, res) => {
  const key: VerifiedKey | undefined = req.keystead
  const name: string | undefined = req.keystead?.name
  const scopes: readonly string[] = req.keystead?.scopes ?? []
  const plain: KeyInfo | undefined = req.keystead?.toJSON()
  res.json({ name, scopes, id: key?.id, created: plain?.createdAt.toISOString() })
})
const auth = keystead.express(options)
app.get('/v1/models', auth.require('models:read', ['models:list']), (req, res) => {
  res.json({ id: req.keystead!.id })
})

// Fastify: the plugin, a route's scopes and a public route, the key on the request.
const fastify = Fastify()
fastify.register(keystead.fastify, { store, scopes: ['chat:completions'] })
fastify.post('/v1/chat/completions', { config: { keystead: { scopes: ['chat:write'] } } }, async (request) => {
  const key: VerifiedKey | null = request.keystead
  return { name: key?.name, id: request.keystead?.id, scopes: request.keystead?.scopes }
})
fastify.get('/healthz', { config: { keystead: false } }, async () => ({ ok: true }))

// @ts-expect-error: the store is required
keystead.express({ scopes: ['x'] })
// @ts-expect-error: the plugin needs the store
fastify.register(keystead.fastify, { scopes: ['x'] })
// @ts-expect-error: scopes are strings
fastify.register(keystead.fastify, { store, scopes: 3 })
// @ts-expect-error: scopes are strings
keystead.express({ store, scopes: [1] })
// @ts-expect-error: a route's keystead config is false or { scopes } (Fastify infers a route's
// own config type, so the check is on the augmented FastifyContextConfig)
const routeConfig: FastifyContextConfig = { keystead: 'public' }
// @ts-expect-error: the key info is read-only
if (app.request.keystead) app.request.keystead.name = 'renamed'

export { app, fastify, routeConfig }
