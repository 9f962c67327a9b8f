'use strict'
// Node `cluster`: several worker processes open the same store file and create and verify
// keys concurrently. Afterwards every key verifies in the primary and the usage counts of all
// processes add up.
const test = require('node:test')
const assert = require('node:assert/strict')
const cluster = require('node:cluster')
const path = require('node:path')

const { KeyStore } = require('..')
const { tempStorePath, poll } = require('./helpers/common')

const SCOPE = 'chat:completions'
const WORKERS = 3
const KEYS_PER_WORKER = 6
const ROUNDS = 20

function nextMessage(worker, type) {
  return new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (message.type !== type) return
      worker.off('message', onMessage)
      worker.off('exit', onExit)
      resolve(message)
    }
    const onExit = (code) => reject(new Error(`worker exited with ${code} before "${type}"`))
    worker.on('message', onMessage)
    worker.once('exit', onExit)
  })
}

test('cluster workers share one store file', async (t) => {
  const file = tempStorePath()
  const primary = KeyStore.open(file)
  t.after(() => primary.close())
  const seed = primary.create({ name: 'seed', scopes: [SCOPE] })

  cluster.setupPrimary({ exec: path.join(__dirname, 'helpers', 'cluster-worker.js'), args: [file] })
  const workers = Array.from({ length: WORKERS }, () => cluster.fork())
  const exits = workers.map((w) => new Promise((resolve) => w.once('exit', (code) => resolve(code))))
  t.after(() => workers.forEach((w) => w.isDead() || w.kill()))
  await Promise.all(workers.map((w) => nextMessage(w, 'ready')))

  // Phase 1: all workers create keys at once, each verifying the seed key in between.
  const createdMessages = workers.map((w) => nextMessage(w, 'created'))
  for (const w of workers) {
    w.send({ type: 'create', count: KEYS_PER_WORKER, seed: { id: seed.info.id, key: seed.key } })
  }
  const created = (await Promise.all(createdMessages)).flatMap((m) => m.keys)
  assert.equal(created.length, WORKERS * KEYS_PER_WORKER)
  assert.equal(new Set(created.map((k) => k.id)).size, created.length, 'ids are unique')

  // Phase 2: every worker verifies every key, including those created by the others.
  const doneMessages = workers.map((w) => nextMessage(w, 'done'))
  for (const w of workers) w.send({ type: 'verify', keys: created, rounds: ROUNDS })
  const done = await Promise.all(doneMessages)
  assert.deepEqual(await Promise.all(exits), Array(WORKERS).fill(0), 'every worker exits cleanly')
  for (const d of done) assert.deepEqual(d.errors, [])

  // Usage: each worker closed its handle (which flushes); `get` reads a fresh snapshot.
  const expected = {}
  for (const d of done) {
    for (const [id, n] of Object.entries(d.valid)) expected[id] = (expected[id] || 0) + n
  }
  assert.equal(expected[seed.info.id], WORKERS * KEYS_PER_WORKER)
  for (const { id } of created) assert.ok(expected[id] >= WORKERS * (ROUNDS + 1))
  for (const [id, n] of Object.entries(expected)) {
    assert.equal(primary.get(id).useCount, n, `use count of ${id}`)
  }
  const total = Object.values(expected).reduce((a, b) => a + b, 0)
  const stored = primary.list().reduce((sum, k) => sum + k.useCount, 0)
  assert.equal(stored, total)

  // Every key created by any worker verifies in the primary (within the refresh interval).
  for (const { id, key } of created) {
    const code = await poll(() => {
      const c = primary.verify(key, { scopes: [SCOPE] }).code
      return c === 'valid' && c
    })
    assert.equal(code, 'valid', `key ${id} verifies in the primary`)
  }
  assert.equal(primary.list().length, created.length + 1)
})
