// A typed ESM consumer: default and named imports of 'keystead'. Checked, never run.
import keystead, { KeyStore, express, fastify, type VerifiedKey } from 'keystead'
import Express from 'express'
import Fastify from 'fastify'

const store: KeyStore = KeyStore.open('memory:')
const same: typeof keystead.KeyStore = KeyStore

const app = Express()
app.use(express({ store, scopes: ['chat:completions'] }))
app.get('/', (req, res) => {
  const key: VerifiedKey | undefined = req.keystead
  res.json({ name: key?.name, same: same === keystead.KeyStore })
})

const server = Fastify()
await server.register(fastify, { store, realm: 'api' })
server.get('/', async (request) => ({ name: request.keystead?.name }))
server.get('/me', { config: { keystead: { scopes: 'me' } } }, async (request) => request.keystead?.toJSON())

export { app, server, keystead }
