'use strict'
// Protecting an OpenAI-style endpoint of an Express app with keystead's middleware.
//
//   KEYSTEAD_STORE=./keystead.redb PORT=8080 node examples/express-server.js
const express = require('express')
const keystead = require('..') // in an application: require('keystead')

function createApp(store) {
  const app = express()
  // Every route below needs a key; refusals get core's status (401 / 403 / 400) and
  // `WWW-Authenticate` challenge, and an unreachable store a 503 with Retry-After.
  app.use(keystead.express({ store }))
  app.post(
    '/api/v1/chat/completions',
    keystead.express.require('chat:completions'), // this route's scope
    express.json(),
    (req, res) => {
      const last = req.body.messages?.at(-1)?.content ?? ''
      res.json({
        object: 'chat.completion',
        model: req.body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: `You said: ${last}` } }],
        apiKey: { id: req.keystead.id, name: req.keystead.name },
      })
    },
  )
  return app
}

module.exports = { createApp }

if (require.main === module) {
  const store = keystead.KeyStore.open(process.env.KEYSTEAD_STORE || 'keystead.redb')
  const server = createApp(store).listen(Number(process.env.PORT || 8080), '127.0.0.1', () =>
    console.log(`listening on http://127.0.0.1:${server.address().port}`),
  )
  const stop = () => server.close(() => store.close())
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}
