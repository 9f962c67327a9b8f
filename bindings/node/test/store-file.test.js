'use strict'
// The store file: a store others may write and a file replaced under an open store are
// KEYSTEAD_STORE_ERROR (core's InsecurePermissions and StoreReplaced); a short pepper is
// KEYSTEAD_INVALID_ARGUMENT.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { KeyStore } = require('..')
const { tempStorePath } = require('./helpers/common')

const unix = process.platform !== 'win32'

test('a store others may write is a store error naming chmod 600', { skip: !unix && 'Unix modes' }, () => {
  const file = tempStorePath()
  KeyStore.open(file).close()
  fs.chmodSync(file, 0o666)
  assert.throws(() => KeyStore.open(file), (err) => {
    assert.equal(err.code, 'KEYSTEAD_STORE_ERROR')
    assert.match(err.message, /chmod 600/)
    return true
  })
  fs.chmodSync(file, 0o644)
  KeyStore.open(file).close()
})

test('a store file replaced under an open store is a store error', { skip: !unix && 'inodes' }, () => {
  const file = tempStorePath()
  const store = KeyStore.open(file)
  const { key, info } = store.create({ name: 'k' })
  const copy = path.join(path.dirname(file), 'copy.redb')
  fs.copyFileSync(file, copy)
  fs.renameSync(copy, file)
  assert.throws(() => store.revoke(info.id), (err) => {
    assert.equal(err.code, 'KEYSTEAD_STORE_ERROR')
    assert.match(err.message, /replaced/)
    return true
  })
  store.close()
  const again = KeyStore.open(file)
  assert.equal(again.verify(key).code, 'valid')
  again.close()
})

test('a pepper shorter than 32 bytes is an invalid argument', () => {
  const file = tempStorePath()
  for (const pepper of ['p', 'x'.repeat(31), Buffer.alloc(31, 7)]) {
    assert.throws(() => KeyStore.open(file, { pepper }), (err) => {
      assert.equal(err.code, 'KEYSTEAD_INVALID_ARGUMENT')
      assert.match(err.message, /32 to 1024 bytes/)
      return true
    })
    assert.equal(fs.existsSync(file), false)
  }
  KeyStore.open(file, { pepper: 'x'.repeat(32) }).close()
})
