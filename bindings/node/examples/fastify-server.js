'use strict'
// Protecting an OpenAI-style endpoint of a Fastify app with keystead's plugin.
//
//   KEYSTEAD_STORE=./keystead.redb PORT=8080 node examples/fastify-server.js
const Fastify = require('fastify')
const keystead = require('..') // in an application: require('keystead')

async function createApp(store, options = {}) {
  const app = Fastify(options)
  // Applies to every route of `app` (the plugin skips Fastify's encapsulation); it checks
  // the key in an onRequest hook, before the body is read.
  await app.register(keystead.fastify, { store })
  app.post(
    '/api/v1/chat/completions',
    { config: { keystead: { scopes: ['chat:completions'] } } }, // this route's scope
    async (request) => {
      const last = request.body.messages?.at(-1)?.content ?? ''
      return {
        object: 'chat.completion',
        model: request.body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: `You said: ${last}` } }],
        apiKey: { id: request.keystead.id, name: request.keystead.name },
      }
    },
  )
  app.get('/healthz', { config: { keystead: false } }, async () => ({ ok: true })) // public
  return app
}

module.exports = { createApp }

if (require.main === module) {
  const store = keystead.KeyStore.open(process.env.KEYSTEAD_STORE || 'keystead.redb')
  createApp(store, { logger: true }).then(async (app) => {
    await app.listen({ port: Number(process.env.PORT || 8080), host: '127.0.0.1' })
    const stop = () => app.close().then(() => store.close())
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}
