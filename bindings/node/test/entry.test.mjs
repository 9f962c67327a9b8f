// The package's entry point by name, as an application imports it: ESM `import` and CJS
// `require` of 'keystead' (package.json `exports`) give the same module, the binding's
// exports and the framework drop-ins.
import test from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'

import keystead, { KeyStore, express, fastify, __napiBindingTarget } from 'keystead'
import * as namespace from 'keystead'
import * as loader from '../index.js'

const require = createRequire(import.meta.url)

test('import and require of "keystead" are one module', () => {
  const cjs = require('keystead')
  assert.equal(keystead, cjs)
  assert.equal(KeyStore, cjs.KeyStore)
  assert.equal(express, cjs.express)
  assert.equal(fastify, cjs.fastify)
  assert.equal(__napiBindingTarget, cjs.__napiBindingTarget)
  assert.equal(typeof express, 'function')
  assert.equal(typeof express.require, 'function')
  assert.equal(typeof fastify, 'function')
  assert.equal(fastify[Symbol.for('skip-override')], true)
  // The generated loader's KeyStore itself, not a copy.
  assert.equal(KeyStore, require('../index.js').KeyStore)
})

test('every named ESM export of the generated loader is one of the package too', () => {
  for (const name of Object.keys(loader)) {
    if (name === 'default') continue
    assert.ok(name in namespace, `${name} is not exported by lib/keystead.mjs`)
    assert.equal(namespace[name], loader[name], name)
  }
  assert.deepEqual(
    Object.keys(namespace).sort(),
    [...new Set([...Object.keys(loader), 'express', 'fastify'])].sort(),
  )
})

test('the ESM middleware works against a store', () => {
  const store = KeyStore.open('memory:')
  try {
    const { key } = store.create({ name: 'esm', scopes: ['a'] })
    const middleware = express({ store, scopes: ['a'] })
    const req = { headers: { authorization: `Bearer ${key}` } }
    let passed = false
    middleware(req, {}, (err) => {
      assert.equal(err, undefined)
      passed = true
    })
    assert.ok(passed)
    assert.equal(req.keystead.name, 'esm')
  } finally {
    store.close()
  }
})
