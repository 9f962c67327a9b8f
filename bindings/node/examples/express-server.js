'use strict'
// Protecting an OpenAI-style endpoint of an Express app with keystead.
//
//   KEYSTEAD_STORE=./keystead.redb PORT=8080 node examples/express-server.js
const express = require('express')
const { KeyStore } = require('..') // in an application: require('keystead')

/**
 * Express middleware: lets a request through only with an `Authorization: Bearer <key>` that
 * verifies and grants every scope in `scopes`; the key's info is then in `req.apiKey`.
 * Refusals get core's status (401 / 403 / 400) and `WWW-Authenticate` value.
 */
function requireApiKey(store, scopes = []) {
  return (req, res, next) => {
    let check
    try {
      check = store.verifyHeader(req.get('authorization'), { scopes })
    } catch (err) {
      return next(err) // an operational failure (e.g. KEYSTEAD_STORE_ERROR), not a bad key
    }
    if (!check.ok) {
      return res
        .status(check.httpStatus)
        .set('WWW-Authenticate', check.wwwAuthenticate)
        .json({ error: { code: check.code, message: `API key ${check.code}` } })
    }
    req.apiKey = check.key
    next()
  }
}

function createApp(store) {
  const app = express()
  app.post(
    '/api/v1/chat/completions',
    requireApiKey(store, ['chat:completions']),
    express.json(),
    (req, res) => {
      const last = req.body.messages?.at(-1)?.content ?? ''
      res.json({
        object: 'chat.completion',
        model: req.body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: `You said: ${last}` } }],
        apiKey: { id: req.apiKey.id, name: req.apiKey.name },
      })
    },
  )
  return app
}

module.exports = { requireApiKey, createApp }

if (require.main === module) {
  const store = KeyStore.open(process.env.KEYSTEAD_STORE || 'keystead.redb')
  const server = createApp(store).listen(Number(process.env.PORT || 8080), '127.0.0.1', () =>
    console.log(`listening on http://127.0.0.1:${server.address().port}`),
  )
  const stop = () => server.close(() => store.close())
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}
