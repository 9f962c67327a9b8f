'use strict'
// Several worker_threads of one process, each with its own handle on the same store file,
// verifying concurrently; usage counts from every thread add up after they close.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { Worker } = require('node:worker_threads')

const { KeyStore } = require('..')
const { tempStorePath } = require('./helpers/common')

const SCOPE = 'chat:completions'

function runWorker(workerData) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(path.join(__dirname, 'helpers', 'verify-thread.js'), { workerData })
    let result
    worker.on('message', (message) => (result = message))
    worker.on('error', reject)
    worker.on('exit', (code) =>
      code === 0 ? resolve(result) : reject(new Error(`worker exited with ${code}`)),
    )
  })
}

test('worker_threads verify concurrently against one store file', async (t) => {
  const file = tempStorePath()
  const store = KeyStore.open(file)
  t.after(() => store.close())
  const keys = []
  for (let i = 0; i < 4; i++) {
    const { key, info } = store.create({ name: `thread-key-${i}`, scopes: [SCOPE] })
    keys.push({ id: info.id, key })
  }
  const rounds = 250
  const threads = 4
  const results = await Promise.all(
    Array.from({ length: threads }, () => runWorker({ path: file, keys, rounds, scope: SCOPE })),
  )
  for (const r of results) {
    assert.deepEqual(r.codes, { valid: rounds * keys.length })
    assert.equal(r.wrong, 'malformed')
  }
  // Each thread's handle flushed its usage on close; the main handle reads the file afresh.
  for (const { id, key } of keys) {
    const expected = results.reduce((sum, r) => sum + (r.valid[id] || 0), 0)
    assert.equal(expected, threads * rounds)
    assert.equal(store.get(id).useCount, expected)
    assert.equal(store.verify(key).code, 'valid')
  }
})
