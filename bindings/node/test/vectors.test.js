'use strict'
// The shared vectors (tests/vectors/*.json): every binding must give the same outcome codes.
const test = require('node:test')
const assert = require('node:assert/strict')

const { KeyStore } = require('..')
const { loadVectors, tempStorePath } = require('./helpers/common')
const { runLifecycle, ALL_CODES } = require('./helpers/lifecycle')

const keys = loadVectors('keys.json')
const headers = loadVectors('headers.json')
const lifecycle = loadVectors('lifecycle.json')

test('keys.json: verify outcome on an empty store with prefix ks', (t) => {
  const store = KeyStore.open(tempStorePath(), { prefix: 'ks' })
  t.after(() => store.close())
  for (const c of keys.cases) {
    const check = store.verify(c.key)
    assert.equal(check.code, c.verify, `case "${c.name}"`)
    assert.equal(check.ok, false, `case "${c.name}"`)
    assert.equal(check.key, null, `case "${c.name}"`)
    assert.equal(check.keyId, null, `case "${c.name}"`)
    assert.ok([400, 401].includes(check.httpStatus), `case "${c.name}"`)
    assert.match(check.wwwAuthenticate, /^Bearer/, `case "${c.name}"`)
  }
})

test('headers.json: verifyHeader outcome on an empty store with prefix ks', (t) => {
  const store = KeyStore.open(tempStorePath(), { prefix: 'ks' })
  t.after(() => store.close())
  for (const c of headers.cases) {
    const check = store.verifyHeader(c.header)
    assert.equal(check.code, c.verify, `case "${c.name}"`)
    if (c.verify === 'missing') {
      assert.equal(check.httpStatus, 401)
      assert.equal(check.wwwAuthenticate, 'Bearer')
    }
    if (c.verify === 'malformed') {
      assert.equal(check.httpStatus, 400)
      assert.equal(check.wwwAuthenticate, 'Bearer error="invalid_request"')
    }
    if (c.verify === 'not_found') {
      assert.equal(check.httpStatus, 401)
      assert.equal(check.wwwAuthenticate, 'Bearer error="invalid_token"')
    }
  }
  // An absent header (undefined / null, as node:http gives it) is `missing`.
  assert.equal(store.verifyHeader(undefined).code, 'missing')
  assert.equal(store.verifyHeader(null).code, 'missing')
  assert.equal(store.verifyHeader().code, 'missing')
  // Likewise a bare key that is absent (e.g. no x-api-key header).
  assert.equal(store.verify(undefined).code, 'missing')
  assert.equal(store.verify(null).code, 'missing')
})

test('well-formed vector keys are not_found in a store that holds other keys', (t) => {
  const store = KeyStore.open(tempStorePath())
  t.after(() => store.close())
  store.create({ name: 'other' })
  for (const c of keys.cases.filter((c) => c.verify === 'not_found')) {
    assert.equal(store.verify(c.key).code, 'not_found', c.name)
  }
})

test('lifecycle.json: scripted admin steps give the expected outcomes, all eight codes', () => {
  const seen = new Set()
  for (const c of lifecycle.cases) for (const code of runLifecycle(c)) seen.add(code)
  assert.deepEqual([...seen].sort(), ALL_CODES)
})
