'use strict'
// The result of verify / verifyHeader: its key object (decoded lazily, see src/fast_verify.js),
// and arguments of unusual shapes, which must behave as the napi-rs conversions define.
const test = require('node:test')
const assert = require('node:assert/strict')
const util = require('node:util')

const { KeyStore } = require('..')
const { tempStorePath } = require('./helpers/common')

const SCOPE = 'chat:completions'

function open(t, options) {
  const store = KeyStore.open(tempStorePath(), options)
  t.after(() => store.close())
  return store
}

/** The fields of an info object, as a plain object (what `get()` returns). */
const FIELDS = [
  'id',
  'name',
  'scopes',
  'metadata',
  'status',
  'createdAt',
  'updatedAt',
  'expiresAt',
  'lastUsedAt',
  'useCount',
  'replaces',
  'replacedBy',
]
const plain = (info) => Object.fromEntries(FIELDS.map((f) => [f, info[f]]))

test('verification.key: typed getters; JSON and inspect show the fields, never the key', (t) => {
  const store = open(t)
  const expiresAt = new Date(Date.now() + 86_400_000)
  const { key, info } = store.create({
    name: 'dev-server-integration',
    scopes: [SCOPE, 'embeddings'],
    metadata: { owner: 'platform-team' },
    expiresAt,
  })
  const secret = key.slice(15)
  const check = store.verifyHeader(`Bearer ${key}`, { scopes: [SCOPE] })
  assert.equal(check.ok, true)
  const k = check.key

  assert.equal(typeof k.id, 'string')
  assert.equal(k.id, info.id)
  assert.equal(typeof k.name, 'string')
  assert.equal(k.name, 'dev-server-integration')
  assert.ok(Array.isArray(k.scopes))
  assert.deepEqual(k.scopes, [SCOPE, 'embeddings'])
  assert.equal(typeof k.metadata, 'object')
  assert.deepEqual(k.metadata, { owner: 'platform-team' })
  assert.equal(k.status, 'active')
  for (const field of ['createdAt', 'updatedAt', 'expiresAt']) {
    assert.ok(k[field] instanceof Date, field)
    assert.equal(k[field].getTime(), info[field].getTime(), field)
    assert.equal(k[field], k[field], `${field} is the same Date on every read`)
  }
  assert.equal(k.lastUsedAt, null)
  assert.equal(typeof k.useCount, 'number')
  assert.equal(k.useCount, 0)
  assert.equal(k.replaces, null)
  assert.equal(k.replacedBy, null)
  assert.equal(k.scopes, k.scopes, 'the same array on every read')
  assert.deepEqual(plain(k), info)

  // JSON.stringify (through toJSON) shows every field, and no key material.
  const json = JSON.stringify(k)
  assert.ok(json.includes('"name":"dev-server-integration"'), json)
  assert.ok(!json.includes(secret))
  assert.ok(!json.includes(key))
  assert.deepEqual(JSON.parse(json), JSON.parse(JSON.stringify(info)))
  const parsed = JSON.parse(JSON.stringify(check))
  assert.deepEqual(parsed.key, JSON.parse(JSON.stringify(info)))
  // toJSON() is a plain copy: the object to spread, clone or post elsewhere.
  const copy = k.toJSON()
  assert.equal(Object.getPrototypeOf(copy), Object.prototype)
  assert.deepEqual(copy, info)
  assert.deepEqual(structuredClone(copy), info)
  copy.scopes.push('changed')
  assert.deepEqual(k.scopes, [SCOPE, 'embeddings'], 'toJSON() copies the arrays')

  const shown = util.inspect(check, { depth: 10 })
  assert.match(shown, /name: 'dev-server-integration'/)
  assert.match(shown, /owner: 'platform-team'/)
  assert.ok(!shown.includes(secret))
  assert.match(util.inspect(check, { depth: 0 }), /key: \[KeyInfo\]/)

  // Read-only: assignments throw in strict mode and change nothing.
  assert.throws(() => {
    k.name = 'x'
  }, TypeError)
  assert.equal(k.name, 'dev-server-integration')
})

test('verification.key holds what get() holds when valid; refused keys carry only keyId', (t) => {
  const store = open(t, { flushIntervalMs: 0 })
  const name = 'naïve “quoted” \\ name 😀'
  // (Control characters are refused in metadata values since issue 12; quotes and backslashes
  // still need escaping in the payload.)
  const metadata = { empty: '', 'team.name': 'ML "core" tabs \\ ünïcode 😀', __proto__x: 'p' }
  const a = store.create({ name, scopes: [SCOPE], metadata })
  const rotated = store.rotate(a.info.id, { graceMs: 60_000 })
  const b = store.create({ name: 'disabled one' })
  store.disable(b.info.id)
  const c = store.create({ name: 'revoked one', scopes: ['embeddings'] })
  store.revoke(c.info.id)

  const cases = [
    [a.key, { scopes: [SCOPE] }, 'valid', a.info.id],
    [rotated.key, { scopes: [SCOPE] }, 'valid', rotated.info.id],
    [rotated.key, { scopes: ['embeddings'] }, 'insufficient_scope', rotated.info.id],
    [b.key, undefined, 'disabled', b.info.id],
    [c.key, undefined, 'revoked', c.info.id],
  ]
  for (const [key, options, code, id] of cases) {
    const check = store.verify(key, options)
    assert.equal(check.code, code)
    assert.equal(check.keyId, id, code)
    if (code !== 'valid') {
      // Issue 12 item 9: "has a key" must never admit a refused key.
      assert.equal(check.key, null, code)
      continue
    }
    const expected = store.get(id)
    // Usage figures are as of the view the check used; compare the rest.
    const { useCount, lastUsedAt, ...rest } = plain(check.key)
    const { useCount: _u, lastUsedAt: _l, ...expectedRest } = expected
    assert.deepEqual(rest, expectedRest, code)
    assert.equal(typeof useCount, 'number')
    assert.ok(lastUsedAt === null || lastUsedAt instanceof Date)
  }
  assert.equal(store.verify(a.key).key.replacedBy, rotated.info.id)
  assert.equal(store.verify(rotated.key).key.replaces, a.info.id)
  assert.equal(store.verify(a.key).key.name, name)
  assert.deepEqual(store.verify(a.key).key.metadata, metadata)
})

test('verify results without a key, and WWW-Authenticate values built from the scopes', (t) => {
  const store = open(t)
  const { key, info } = store.create({ name: 'few scopes', scopes: ['a', 'b'] })
  const check = store.verify(key, { scopes: ['a', 'b', 'c', 'd/e'] })
  assert.equal(check.code, 'insufficient_scope')
  assert.equal(check.httpStatus, 403)
  assert.equal(check.wwwAuthenticate, 'Bearer error="insufficient_scope", scope="a b c d/e"')
  // The id follows the WWW-Authenticate value in the payload; no key for a refused check.
  assert.equal(check.key, null)
  assert.equal(check.keyId, info.id)
  // Nine scopes and more take the general path.
  const many = Array.from({ length: 12 }, (_, i) => `s${i}`)
  const wide = store.create({ name: 'many scopes', scopes: many })
  assert.equal(store.verify(wide.key, { scopes: many }).code, 'valid')
  assert.equal(store.verify(wide.key, { scopes: [...many, 'x'] }).code, 'insufficient_scope')
  assert.equal(store.verify(wide.key, { scopes: [] }).code, 'valid')
  assert.equal(store.verify(wide.key, {}).code, 'valid')
  assert.equal(store.verify(wide.key, { scopes: undefined }).code, 'valid')

  const typo = store.verifyHeader(`Bearer ${key.slice(0, -1)}`)
  assert.deepEqual(typo, {
    ok: false,
    code: 'malformed',
    key: null,
    keyId: null,
    httpStatus: 400,
    wwwAuthenticate: 'Bearer error="invalid_request"',
  })
  assert.deepEqual(Object.keys(store.verify(key)), [
    'ok',
    'code',
    'key',
    'keyId',
    'httpStatus',
    'wwwAuthenticate',
  ])
  // Long and non-ASCII inputs.
  assert.equal(store.verify('x'.repeat(5000)).code, 'malformed')
  assert.equal(store.verifyHeader(`Bearer ${'é'.repeat(200)}`).code, 'malformed')
  assert.equal(store.verify(`${key}😀`).code, 'malformed')
})

test('arguments of other types are KEYSTEAD_INVALID_ARGUMENT, like bad values', (t) => {
  const store = open(t)
  const { key } = store.create({ name: 'x', scopes: [SCOPE] })
  const code = (call) => {
    try {
      call()
    } catch (e) {
      assert.ok(e instanceof Error)
      assert.ok(!e.message.includes(key.slice(15)), e.message)
      return e.code
    }
    return 'no error'
  }
  const invalid = 'KEYSTEAD_INVALID_ARGUMENT'
  assert.equal(code(() => store.verify(123)), invalid)
  assert.equal(code(() => store.verify({})), invalid)
  assert.equal(code(() => store.verify([key])), invalid)
  assert.equal(code(() => store.verifyHeader({})), invalid)
  assert.equal(code(() => store.verifyHeader(Buffer.from(`Bearer ${key}`))), invalid)
  assert.equal(code(() => store.verify(key, 5)), invalid)
  assert.equal(code(() => store.verify(key, { scopes: SCOPE })), invalid)
  assert.equal(code(() => store.verify(key, { scopes: { 0: SCOPE } })), invalid)
  assert.equal(code(() => store.verify(key, { scopes: [1] })), invalid)
  assert.equal(code(() => store.verify(key, { scopes: [SCOPE, 1] })), invalid)
  assert.equal(code(() => store.verifyHeader(`Bearer ${key}`, { scopes: [[SCOPE]] })), invalid)
  assert.equal(code(() => store.verify(key, { scopes: ['not a scope'] })), invalid)
  assert.equal(code(() => store.verify(key, { scopes: ['x'.repeat(300)] })), invalid)
  // null / undefined are an absent value, not a wrong type.
  assert.equal(store.verify(null).code, 'missing')
  assert.equal(store.verifyHeader(undefined, { scopes: null }).code, 'missing')
  // An exception thrown while reading the options is passed on as it is, at each of the
  // three reads of `scopes` (the script's, the native fast path's, napi-rs's conversion).
  for (const failing of [1, 2, 3]) {
    const boom = new Error('boom')
    let reads = 0
    const flaky = {
      get scopes() {
        if (++reads === failing) throw boom
        return new Array(9).fill(SCOPE)
      },
    }
    assert.throws(() => store.verify(key, flaky), (e) => e === boom, `read ${failing}`)
    assert.equal(reads, failing)
  }
  // Another receiver: the TypeError V8 gives napi-rs methods.
  for (const receiver of [{}, null, undefined, 5, Object.create(KeyStore.prototype)]) {
    for (const method of [KeyStore.prototype.verify, KeyStore.prototype.verifyHeader]) {
      assert.throws(() => method.call(receiver, key), {
        name: 'TypeError',
        message: 'Illegal invocation',
      })
    }
  }
  // A getter on options runs, and a frozen store still verifies.
  let reads = 0
  const options = {
    get scopes() {
      reads++
      return [SCOPE]
    },
  }
  assert.equal(store.verify(key, options).code, 'valid')
  assert.equal(reads, 1)
  const frozen = Object.freeze(KeyStore.open(tempStorePath()))
  t.after(() => frozen.close())
  const { key: other } = frozen.create({ name: 'frozen' })
  assert.equal(frozen.verify(other).code, 'valid')
  assert.equal(frozen.verify(other).code, 'valid')
})

test('verify / verifyHeader are always the fast path of src/fast_verify.js', () => {
  // The napi-rs declarations in src/api.rs exist only for index.d.ts: loading the addon
  // replaces them, so their Rust bodies (which only throw an internal error) never run.
  for (const name of ['verify', 'verifyHeader']) {
    const method = KeyStore.prototype[name]
    const source = Function.prototype.toString.call(method)
    assert.doesNotMatch(source, /\[native code\]/, name)
    assert.match(source, /StoreHandle\.of\(this\)/, name)
    assert.equal(method.name, name)
    const descriptor = Object.getOwnPropertyDescriptor(KeyStore.prototype, name)
    assert.deepEqual(
      { writable: descriptor.writable, enumerable: descriptor.enumerable },
      { writable: true, enumerable: true },
    )
  }
})
