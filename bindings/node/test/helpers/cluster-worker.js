'use strict'
// A cluster worker: opens the shared store file, creates keys while verifying a seed key, then
// verifies every key created by any worker (polling: other processes' changes become visible
// within core's refresh interval), reports its counts and closes (which flushes usage).
const { KeyStore } = require('../..')

const SCOPE = 'chat:completions'
const REFRESH_MS = 1000 // core's default refresh interval, which this worker's store uses
const EVENTUALLY_MS = 120_000 // liveness only: a working store is far quicker, a broken one never
const path = process.argv[2]
const store = KeyStore.open(path)
const valid = {} // id -> successful verifications by this process
const errors = []

function verify(id, key) {
  const check = store.verify(key, { scopes: [SCOPE] })
  if (check.ok) valid[id] = (valid[id] || 0) + 1
  return check
}

function send(message) {
  return new Promise((resolve) => process.send(message, resolve))
}

process.on('message', async (message) => {
  try {
    if (message.type === 'create') {
      const created = []
      for (let i = 0; i < message.count; i++) {
        const { key, info } = await (i % 2
          ? store.createAsync({ name: `worker-${process.pid}-${i}`, scopes: [SCOPE] })
          : store.create({ name: `worker-${process.pid}-${i}`, scopes: [SCOPE] }))
        created.push({ id: info.id, key })
        const seed = verify(message.seed.id, message.seed.key)
        if (seed.code !== 'valid') errors.push(`seed verified as ${seed.code}`)
      }
      await send({ type: 'created', keys: created })
    } else if (message.type === 'verify') {
      // Every key was created before this message was sent. The staleness rule
      // (docs/storage.md): a verify that starts more than the refresh interval (the default,
      // 1 s) after that may not miss it. Checked on every verify; the wait is not timed.
      const receivedAt = Date.now()
      for (const { id, key } of message.keys) {
        const deadline = Date.now() + EVENTUALLY_MS
        let started = Date.now()
        let check = verify(id, key)
        while (check.code === 'not_found') {
          if (started > receivedAt + REFRESH_MS) {
            errors.push(`${id} not found by a verify ${started - receivedAt} ms after its create`)
            break
          }
          if (Date.now() >= deadline) break
          await new Promise((resolve) => setTimeout(resolve, 50))
          started = Date.now()
          check = verify(id, key)
        }
        if (check.code !== 'valid') errors.push(`${id} verified as ${check.code}`)
        for (let i = 0; i < message.rounds; i++) {
          if (verify(id, key).code !== 'valid') errors.push(`${id} stopped verifying`)
        }
      }
      store.close()
      await send({ type: 'done', valid, errors })
      process.disconnect()
    }
  } catch (err) {
    await send({ type: 'done', valid, errors: [...errors, `${err.code}: ${err.message}`] })
    process.exit(1)
  }
})

send({ type: 'ready' })
