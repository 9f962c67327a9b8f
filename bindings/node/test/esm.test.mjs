// The package used through `import` (ESM): named and default imports of the generated loader.
import test from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import keystead, { KeyStore } from '../index.js'

const require = createRequire(import.meta.url)

test('named and default imports expose the same KeyStore as require()', () => {
  assert.equal(typeof KeyStore, 'function')
  assert.equal(typeof KeyStore.open, 'function')
  assert.equal(keystead.KeyStore, KeyStore)
  assert.equal(require('../index.js').KeyStore, KeyStore)
})

test('create and verify through the ESM entry point', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keystead-node-esm-'))
  const store = KeyStore.open(path.join(dir, 'keystead.redb'))
  // Close first: closing flushes usage, which a handle refuses once its file is removed.
  t.after(() => {
    store.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const { key, info } = store.create({ name: 'esm', scopes: ['chat:completions'] })
  const check = store.verifyHeader(`Bearer ${key}`, { scopes: ['chat:completions'] })
  assert.equal(check.ok, true)
  assert.equal(check.key.id, info.id)
  const created = await store.createAsync({ name: 'esm-async' })
  assert.equal(store.verify(created.key).code, 'valid')
  assert.throws(() => store.get('nope'), { code: 'KEYSTEAD_INVALID_ARGUMENT' })
})
