'use strict'
// Issue 12: far-future and invalid Dates never crash the process or pass silently, the
// created-key object redacts its key when inspected or serialized, and invisible characters
// and keys are refused as names.
const test = require('node:test')
const assert = require('node:assert/strict')
const util = require('node:util')

const { KeyStore } = require('..')
const { tempStorePath } = require('./helpers/common')

const DAY = 86_400_000

function open(t, options) {
  const store = KeyStore.open(tempStorePath(), options)
  t.after(() => store.close())
  return store
}

function assertInvalid(fn, what) {
  assert.throws(fn, (err) => {
    assert.equal(err.code, 'KEYSTEAD_INVALID_ARGUMENT', `${what}: ${err.code} ${err.message}`)
    return true
  })
}

test('a grace ending after 9999 is refused, and the old key stays readable', (t) => {
  const store = open(t)
  const { info } = store.create({ name: 'far' })
  // 200,000,000 days: year 549608, which chrono's From<SystemTime> panicked on.
  assertInvalid(() => store.rotate(info.id, { graceMs: 200_000_000 * DAY }), 'rotate')
  const old = store.get(info.id)
  assert.equal(old.replacedBy, null)
  assert.equal(old.expiresAt, null)
  assert.equal(store.list().length, 1)
})

test('huge Dates are refused with KEYSTEAD_INVALID_ARGUMENT, never a crash', async (t) => {
  const store = open(t)
  const { info } = store.create({ name: 'dates' })
  const largest = new Date(8.64e15) // +275760-09-13, the largest Date
  const year10000 = new Date(Date.UTC(10000, 0, 1))
  for (const date of [largest, year10000]) {
    assertInvalid(() => store.setExpiry(info.id, date), 'setExpiry')
    assertInvalid(() => store.create({ name: 'x', expiresAt: date }), 'create')
    assertInvalid(() => store.usage(info.id, new Date(0), date), 'usage')
    assertInvalid(() => store.audit({ since: date }), 'audit')
    await assert.rejects(store.createAsync({ name: 'x', expiresAt: date }), {
      code: 'KEYSTEAD_INVALID_ARGUMENT',
    })
  }
  assert.equal(store.get(info.id).expiresAt, null)
  // The last second of 9999 is fine.
  const latest = new Date(Date.UTC(9999, 11, 31, 23, 59, 59))
  assert.equal(store.setExpiry(info.id, latest).expiresAt.getTime(), latest.getTime())
})

test('an invalid Date is refused, not read as 1970', (t) => {
  const store = open(t)
  const { info } = store.create({ name: 'nan' })
  const invalid = new Date(NaN)
  assertInvalid(() => store.audit({ since: invalid }), 'audit since')
  assertInvalid(() => store.usage(info.id, invalid, new Date()), 'usage from')
  assertInvalid(() => store.setExpiry(info.id, invalid), 'setExpiry')
  assertInvalid(() => store.create({ name: 'x', expiresAt: invalid }), 'create')
  // Not a Date at all: a type error, as before.
  assert.throws(() => store.setExpiry(info.id, 'tomorrow'))
})

test('the created key redacts itself in util.inspect and JSON, .key stays readable', async (t) => {
  const store = open(t)
  const check = (created) => {
    assert.match(created.key, /^ks_[0-9A-Za-z]{61}$/)
    const secret = created.key.slice(15)
    const { key } = created
    assert.equal(key, created.key)
    for (const shown of [
      util.inspect(created),
      util.inspect(created, { depth: 10, showHidden: false }),
      util.format('%o', created),
      util.format('%s', created),
      JSON.stringify(created),
      JSON.stringify({ nested: created }),
      util.inspect({ nested: [created] }),
    ]) {
      assert.ok(!shown.includes(secret), `the key is shown: ${shown}`)
    }
    assert.match(util.inspect(created), /\[redacted\]/)
    assert.equal(JSON.parse(JSON.stringify(created)).key, '[redacted]')
    assert.equal(JSON.parse(JSON.stringify(created)).info.id, created.info.id)
    assert.ok(util.inspect(created).includes(created.info.id))
    assert.deepEqual(Object.keys(created), ['info'])
    return created
  }
  const created = check(store.create({ name: 'shown' }))
  const rotated = check(store.rotate(created.info.id, { graceMs: 1000 }))
  check(await store.createAsync({ name: 'async' }))
  check(await store.rotateAsync(rotated.info.id))
  for (const many of store.createMany([{ name: 'many-a' }, { name: 'many-b' }])) check(many)
  // What console.log prints is util.inspect's output (checked above).
})

test('names with invisible characters or a key are refused without echoing the key', (t) => {
  const store = open(t)
  const { key, info } = store.create({ name: 'donor' })
  for (const name of ['pay\u200Ements', 'a\u202Eb', 'zero\u200Bwidth', key, `token ${key}`]) {
    assert.throws(
      () => store.create({ name }),
      (err) => err.code === 'KEYSTEAD_INVALID_ARGUMENT' && !err.message.includes(key.slice(15)),
    )
  }
  assert.throws(
    () => store.setMetadata(info.id, { note: `\u001b[31m` }),
    { code: 'KEYSTEAD_INVALID_ARGUMENT' },
  )
  assert.throws(() => KeyStore.open(tempStorePath(), { actor: 'a'.repeat(65_530) + 'é' }), {
    code: 'KEYSTEAD_INVALID_ARGUMENT',
  })
})
