'use strict'
// The key lifecycle and the admin API, through the CommonJS entry point.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const util = require('node:util')

const { KeyStore } = require('..')
const { tempStorePath, sleep } = require('./helpers/common')

const SCOPE = 'chat:completions'
const DAY = 86_400_000

// Creates a key that expires `aheadMs` from now. Should the machine stall past that moment
// before the create, the create is refused (an expiry in the past) and retried further ahead.
function createExpiringSoon(store, name, aheadMs) {
  for (;;) {
    const at = Date.now() + aheadMs
    try {
      return store.create({ name, expiresAt: new Date(at) })
    } catch (error) {
      if (error.code !== 'KEYSTEAD_INVALID_ARGUMENT' || Date.now() < at) throw error
      aheadMs *= 2
    }
  }
}

function open(t, options) {
  const store = KeyStore.open(tempStorePath(), options)
  t.after(() => store.close())
  return store
}

test('full lifecycle: create, verify, disable/enable, rotate with grace, revoke, delete', (t) => {
  const store = open(t, { actor: 'lifecycle-test' })
  assert.equal(store.prefix, 'ks')

  const { key, info } = store.create({
    name: 'dev-server-integration',
    scopes: [SCOPE, 'embeddings'],
    metadata: { owner: 'platform-team' },
  })
  assert.match(key, /^ks_[0-9A-Za-z]{61}$/)
  assert.equal(key.slice(3, 15), info.id)
  assert.equal(info.name, 'dev-server-integration')
  assert.deepEqual(info.scopes, ['chat:completions', 'embeddings'])
  assert.deepEqual(info.metadata, { owner: 'platform-team' })
  assert.equal(info.status, 'active')
  assert.ok(info.createdAt instanceof Date)
  assert.ok(Math.abs(info.createdAt.getTime() - Date.now()) < 60_000)
  assert.ok(info.updatedAt instanceof Date)
  assert.equal(info.expiresAt, null)
  assert.equal(info.lastUsedAt, null)
  assert.equal(info.useCount, 0)
  assert.equal(info.replaces, null)
  assert.equal(info.replacedBy, null)
  assert.deepEqual(store.get(info.id), info)

  let valid = 0 // successful verifications of `key`, to compare with the usage counters
  const ok = store.verify(key, { scopes: [SCOPE] })
  valid++
  assert.equal(ok.ok, true)
  assert.equal(ok.code, 'valid')
  assert.equal(ok.httpStatus, 200)
  assert.equal(ok.wwwAuthenticate, null)
  assert.equal(ok.key.id, info.id)
  assert.equal(ok.keyId, info.id)
  const header = store.verifyHeader(`Bearer ${key}`, { scopes: [SCOPE] })
  valid++
  assert.equal(header.code, 'valid')

  // disable / enable
  assert.equal(store.disable(info.id).status, 'disabled')
  const disabled = store.verify(key)
  assert.equal(disabled.code, 'disabled')
  assert.equal(disabled.httpStatus, 401)
  assert.equal(disabled.wwwAuthenticate, 'Bearer error="invalid_token"')
  // A refused key is named by its id only.
  assert.equal(disabled.key, null)
  assert.equal(disabled.keyId, info.id)
  assert.equal(store.enable(info.id).status, 'active')
  assert.equal(store.verify(key).code, 'valid')
  valid++

  // rotate with a grace period: both keys verify, the records link to each other
  const before = Date.now()
  const rotated = store.rotate(info.id, { graceMs: 60_000 })
  assert.notEqual(rotated.key, key)
  assert.equal(rotated.info.replaces, info.id)
  assert.equal(rotated.info.name, info.name)
  assert.deepEqual(rotated.info.scopes, info.scopes)
  assert.deepEqual(rotated.info.metadata, info.metadata)
  const old = store.get(info.id)
  assert.equal(old.replacedBy, rotated.info.id)
  assert.ok(old.expiresAt instanceof Date)
  assert.ok(old.expiresAt.getTime() >= before + 60_000 - 1000)
  assert.ok(old.expiresAt.getTime() <= Date.now() + 60_000 + 1000)
  assert.equal(store.verify(key, { scopes: [SCOPE] }).code, 'valid')
  valid++
  assert.equal(store.verify(rotated.key, { scopes: [SCOPE] }).code, 'valid')
  assert.throws(() => store.rotate(info.id), { code: 'KEYSTEAD_INVALID_STATE' })

  // revoke
  assert.equal(store.revoke(info.id).status, 'revoked')
  const revoked = store.verifyHeader(`Bearer ${key}`)
  assert.equal(revoked.code, 'revoked')
  assert.equal(revoked.httpStatus, 401)
  assert.equal(store.revoke(info.id).status, 'revoked', 'revoking twice changes nothing')
  assert.throws(() => store.enable(info.id), { code: 'KEYSTEAD_INVALID_STATE' })
  assert.throws(() => store.setExpiry(info.id, null), { code: 'KEYSTEAD_INVALID_STATE' })
  assert.equal(store.verify(rotated.key).code, 'valid', 'the replacement is unaffected')

  // usage counters, after a flush
  store.flush()
  assert.equal(store.get(info.id).useCount, valid)
  assert.ok(store.get(info.id).lastUsedAt instanceof Date)
  const days = store.usage(info.id, new Date(Date.now() - DAY), new Date(Date.now() + DAY))
  assert.equal(
    days.reduce((sum, d) => sum + d.count, 0),
    valid,
  )
  for (const d of days) {
    assert.ok(d.day instanceof Date)
    assert.equal(d.day.getTime() % DAY, 0, 'days start at midnight UTC')
  }

  // delete
  store.delete(info.id)
  assert.equal(store.get(info.id), null)
  assert.equal(store.verify(key).code, 'not_found')
  assert.throws(() => store.delete(info.id), { code: 'KEYSTEAD_KEY_NOT_FOUND' })
  assert.throws(() => store.usage(info.id, new Date(), new Date()), {
    code: 'KEYSTEAD_KEY_NOT_FOUND',
  })
  assert.equal(store.get(rotated.info.id).replaces, info.id, 'links keep naming the id')

  // the audit log, newest first
  const audit = store.audit({ limit: 100 })
  const actions = audit.filter((e) => e.keyId === info.id).map((e) => e.action)
  assert.deepEqual(actions, ['delete', 'revoke', 'rotate', 'enable', 'disable', 'create'])
  for (let i = 1; i < audit.length; i++) assert.ok(audit[i - 1].seq > audit[i].seq)
  for (const e of audit) {
    assert.equal(e.actor, 'lifecycle-test')
    assert.ok(e.at instanceof Date)
  }
  const creation = audit.find((e) => e.keyId === rotated.info.id && e.action === 'create')
  assert.ok(creation, 'the replacement key has a create entry')
  assert.equal(store.audit({ limit: 2 }).length, 2)
  assert.equal(store.audit({ since: new Date(Date.now() + DAY) }).length, 0)
  assert.ok(store.audit().length >= 7)
})

test('scopes: a key without the required scope gets insufficient_scope / 403', (t) => {
  const store = open(t)
  const { key, info } = store.create({ name: 'embeddings-only', scopes: ['embeddings'] })
  const check = store.verifyHeader(`Bearer ${key}`, { scopes: [SCOPE] })
  assert.equal(check.ok, false)
  assert.equal(check.code, 'insufficient_scope')
  assert.equal(check.httpStatus, 403)
  assert.equal(check.wwwAuthenticate, 'Bearer error="insufficient_scope", scope="chat:completions"')
  // A refused key is named by its id only.
  assert.equal(check.key, null)
  assert.equal(check.keyId, info.id)
  assert.deepEqual(store.setScopes(info.id, [SCOPE, 'embeddings']).scopes, [SCOPE, 'embeddings'])
  assert.equal(store.verify(key, { scopes: [SCOPE] }).code, 'valid')
  assert.equal(store.verify(key, { scopes: [] }).code, 'valid')
  assert.equal(store.verify(key, { scopes: null }).code, 'valid')
  assert.throws(() => store.verify(key, { scopes: ['not a scope'] }), {
    code: 'KEYSTEAD_INVALID_ARGUMENT',
  })
})

test('expiry: a key past its expiry verifies as expired', async (t) => {
  const store = open(t)
  const { key, info } = createExpiringSoon(store, 'short-lived', 800)
  assert.ok(info.expiresAt instanceof Date)
  // Checked by the clock on every verify, not by how long anything took: valid if it returned
  // before the expiry, expired if it started at or after it, either if it straddled it.
  const expiry = info.expiresAt.getTime()
  for (;;) {
    const started = Date.now()
    const code = store.verify(key).code
    const ended = Date.now()
    if (ended < expiry) assert.equal(code, 'valid', 'a verify that ended before the expiry')
    if (started >= expiry) {
      assert.equal(code, 'expired', 'a verify that started at the expiry or later')
      break
    }
    assert.ok(code === 'valid' || code === 'expired', code)
    await sleep(5)
  }
  const check = store.verify(key)
  assert.equal(check.httpStatus, 401)
  assert.equal(check.wwwAuthenticate, 'Bearer error="invalid_token"')
  assert.equal(store.get(info.id).status, 'expired')
  // set_expiry can extend it, and null clears it
  assert.equal(store.setExpiry(info.id, new Date(Date.now() + DAY)).status, 'active')
  assert.equal(store.verify(key).code, 'valid')
  assert.equal(store.setExpiry(info.id, null).expiresAt, null)
  assert.throws(() => store.setExpiry(info.id, new Date(Date.now() - 1000)), {
    code: 'KEYSTEAD_INVALID_ARGUMENT',
  })
  assert.throws(() => store.create({ name: 'x', expiresAt: new Date(Date.now() - 1000) }), {
    code: 'KEYSTEAD_INVALID_ARGUMENT',
  })
  assert.equal(store.create({ name: 'no expiry', expiresAt: null }).info.expiresAt, null)
})

test('rename, setMetadata, list with filters and paging', (t) => {
  const store = open(t)
  const a = store.create({ name: 'alpha-1', scopes: [SCOPE] }).info
  const b = store.create({ name: 'alpha-2', scopes: ['embeddings'] }).info
  const c = store.create({ name: 'beta', expiresAt: new Date(Date.now() + 3_600_000) }).info
  store.disable(b.id)

  assert.equal(store.rename(a.id, 'alpha-renamed').name, 'alpha-renamed')
  assert.deepEqual(store.setMetadata(a.id, { team: 'ml', env: 'prod' }).metadata, {
    env: 'prod',
    team: 'ml',
  })
  assert.deepEqual(store.setMetadata(a.id, {}).metadata, {})

  const ids = (list) => list.map((k) => k.id).sort()
  assert.deepEqual(ids(store.list()), ids([a, b, c]))
  assert.deepEqual(ids(store.list({})), ids([a, b, c]))
  assert.deepEqual(ids(store.list({ status: 'disabled' })), [b.id])
  assert.deepEqual(ids(store.list({ status: 'active' })), ids([a, c]))
  assert.deepEqual(ids(store.list({ scope: SCOPE })), [a.id])
  assert.deepEqual(ids(store.list({ namePrefix: 'alpha' })), ids([a, b]))
  assert.deepEqual(ids(store.list({ expiringWithinMs: 2 * 3_600_000 })), [c.id])
  assert.deepEqual(store.list({ expiringWithinMs: 1000 }), [])
  assert.deepEqual(ids(store.list({ status: null, scope: undefined })), ids([a, b, c]))

  // paging in id order
  const all = store.list()
  assert.deepEqual(
    all.map((k) => k.id),
    [...all.map((k) => k.id)].sort((x, y) => (x < y ? -1 : 1)),
  )
  const page1 = store.list({ limit: 2 })
  const page2 = store.list({ limit: 2, after: page1[1].id })
  assert.equal(page1.length, 2)
  assert.equal(page2.length, 1)
  assert.deepEqual([...page1, ...page2], all)
  assert.deepEqual(store.list({ limit: 0 }), [])

  // Core's own message, which quotes at most 12 characters of the value.
  assert.throws(() => store.list({ status: 'sleeping' }), {
    code: 'KEYSTEAD_INVALID_ARGUMENT',
    message: /unknown status `sleeping`/,
  })
  const pasted = 'ks_0123456789abSECRETSECRETSECRET'
  assert.throws(
    () => store.list({ status: pasted }),
    (e) => e.code === 'KEYSTEAD_INVALID_ARGUMENT' && !e.message.includes(pasted.slice(12)),
  )
  assert.throws(() => store.list({ after: 'nope' }), { code: 'KEYSTEAD_INVALID_ARGUMENT' })
  assert.throws(() => store.list({ expiringWithinMs: -1 }), { code: 'KEYSTEAD_INVALID_ARGUMENT' })
})

test('open refuses a negative interval and takes a valid maxStalenessMs', (t) => {
  for (const option of ['refreshIntervalMs', 'maxStalenessMs', 'flushIntervalMs']) {
    const path = tempStorePath()
    assert.throws(() => KeyStore.open(path, { [option]: -1 }), {
      code: 'KEYSTEAD_INVALID_ARGUMENT',
      message: new RegExp(option),
    })
    assert.equal(fs.existsSync(path), false, option)
  }
  for (const maxStalenessMs of [0, 5000, Number.MAX_SAFE_INTEGER, null, undefined]) {
    const store = open(t, { maxStalenessMs })
    const { key } = store.create({ name: 'k' })
    assert.equal(store.verify(key).ok, true, String(maxStalenessMs))
  }
})

test('argument errors carry KEYSTEAD_INVALID_ARGUMENT / KEYSTEAD_KEY_NOT_FOUND', (t) => {
  const store = open(t)
  const invalid = { code: 'KEYSTEAD_INVALID_ARGUMENT' }
  assert.throws(() => store.create({ name: '' }), invalid)
  assert.throws(() => store.create({ name: 'x'.repeat(129) }), invalid)
  assert.throws(() => store.create({ name: 'x', scopes: ['has space'] }), invalid)
  assert.throws(() => store.create({ name: 'x', metadata: { 'bad key': 'v' } }), invalid)
  assert.throws(() => store.get('short'), invalid)
  assert.throws(() => store.rotate('000000000001', { graceMs: -5 }), invalid)
  assert.equal(store.get('000000000001'), null)
  assert.throws(() => store.rename('000000000001', 'x'), { code: 'KEYSTEAD_KEY_NOT_FOUND' })
  assert.throws(() => store.revoke('000000000001'), { code: 'KEYSTEAD_KEY_NOT_FOUND' })
  const err = (() => {
    try {
      store.disable('000000000001')
    } catch (e) {
      return e
    }
  })()
  assert.ok(err instanceof Error)
  assert.equal(err.code, 'KEYSTEAD_KEY_NOT_FOUND')
  assert.match(err.message, /000000000001/)
  assert.throws(() => KeyStore.open(tempStorePath(), { prefix: 'Bad-Prefix' }), invalid)
  assert.throws(() => KeyStore.open(tempStorePath(), { cacheSize: -1 }), invalid)
})

test('the plaintext key is never in the store file, in errors, or in inspected info', (t) => {
  const path = tempStorePath()
  const store = KeyStore.open(path, { pepper: 'pepper-from-the-secret-manager-0123456789' })
  const created = store.create({ name: 'secret-holder', scopes: [SCOPE] })
  const { key, info } = created
  const secret = key.slice(15) // after `ks_` and the 12-character public id
  for (let i = 0; i < 5; i++) store.verify(key)
  const rotated = store.rotate(info.id, { graceMs: 1000 })

  // Errors provoked with the key in every argument position never echo the secret.
  const attempts = [
    () => store.get(key),
    () => store.rename(key, 'x'),
    () => store.rename(info.id, key.repeat(3)),
    () => store.create({ name: 'x', scopes: [`${key}!`] }),
    () => store.create({ name: 'x', metadata: { [`${key}!`]: 'v' } }),
    () => store.create({ name: 'x', metadata: { k: key.repeat(20) } }),
    () => store.verify(key, { scopes: [`${key}!`] }),
    () => store.list({ status: key }),
    () => store.list({ after: key }),
    () => store.rotate(info.id),
    () => KeyStore.open(tempStorePath(), { prefix: key }),
    () => KeyStore.open(path, { pepper: key }),
  ]
  for (const attempt of attempts) {
    let thrown
    try {
      attempt()
    } catch (e) {
      thrown = e
    }
    assert.ok(thrown, `${attempt} throws`)
    assert.match(thrown.code, /^KEYSTEAD_/)
    for (const text of [thrown.message, thrown.stack, util.inspect(thrown), JSON.stringify(thrown)]) {
      assert.ok(!text.includes(secret), `no secret in the error of ${attempt}: ${thrown.message}`)
    }
  }

  // Info objects (from create, get, list, verify) never hold the key.
  const check = store.verify(rotated.key)
  for (const shown of [info, store.get(info.id), store.list(), check, check.key, rotated.info]) {
    assert.ok(!util.inspect(shown, { depth: 10 }).includes(secret))
    assert.ok(!JSON.stringify(shown).includes(secret))
  }
  store.close()

  const bytes = fs.readFileSync(path)
  for (const plain of [key, rotated.key]) {
    assert.equal(bytes.indexOf(Buffer.from(plain)), -1, 'the key is not in the file')
    assert.equal(bytes.indexOf(Buffer.from(plain.slice(15))), -1, 'the secret is not in the file')
  }
})

test('wrong pepper, prefix mismatch, Buffer pepper', (t) => {
  const path = tempStorePath()
  const pepper = 'correct horse battery staple, 32+ bytes'
  const store = KeyStore.open(path, { pepper: Buffer.from(pepper), prefix: 'hub' })
  const { key } = store.create({ name: 'peppered' })
  assert.match(key, /^hub_/)
  store.close()

  const wrong = 'battery staple correct horse, 32+ bytes'
  assert.throws(() => KeyStore.open(path, { pepper: wrong }), (err) => {
    assert.ok(err instanceof Error)
    assert.equal(err.code, 'KEYSTEAD_WRONG_PEPPER')
    assert.match(err.message, /wrong pepper/)
    return true
  })
  assert.throws(() => KeyStore.open(path), { code: 'KEYSTEAD_WRONG_PEPPER' })
  assert.throws(() => KeyStore.open(path, { pepper, prefix: 'ks' }), {
    code: 'KEYSTEAD_PREFIX_MISMATCH',
  })
  // The same bytes as a string open it too.
  const again = KeyStore.open(path, { pepper })
  t.after(() => again.close())
  assert.equal(again.prefix, 'hub')
  assert.equal(again.verify(key).code, 'valid')
})

test('a file that is not a store gives a stable error code', () => {
  const path = tempStorePath('not-a-store.redb')
  fs.writeFileSync(path, 'this is not a redb file '.repeat(100))
  assert.throws(() => KeyStore.open(path), (err) => {
    assert.equal(err.code, 'KEYSTEAD_STORE_ERROR')
    return true
  })
})

test('after close() every call throws KEYSTEAD_CLOSED', async () => {
  const store = KeyStore.open(tempStorePath())
  const { key, info } = store.create({ name: 'x' })
  store.verify(key)
  assert.equal(store.closed, false)
  store.close()
  assert.equal(store.closed, true)
  const closed = { code: 'KEYSTEAD_CLOSED', message: /closed/ }
  const id = info.id
  const calls = {
    prefix: () => store.prefix,
    create: () => store.create({ name: 'y' }),
    get: () => store.get(id),
    list: () => store.list(),
    rename: () => store.rename(id, 'z'),
    setMetadata: () => store.setMetadata(id, {}),
    setScopes: () => store.setScopes(id, []),
    setExpiry: () => store.setExpiry(id, null),
    disable: () => store.disable(id),
    enable: () => store.enable(id),
    revoke: () => store.revoke(id),
    rotate: () => store.rotate(id, { graceMs: 0 }),
    delete: () => store.delete(id),
    verify: () => store.verify(key),
    verifyHeader: () => store.verifyHeader(`Bearer ${key}`),
    usage: () => store.usage(id, new Date(), new Date()),
    audit: () => store.audit(),
    flush: () => store.flush(),
    createAsync: () => store.createAsync({ name: 'y' }),
    rotateAsync: () => store.rotateAsync(id),
    revokeAsync: () => store.revokeAsync(id),
    flushAsync: () => store.flushAsync(),
  }
  for (const [name, call] of Object.entries(calls)) {
    assert.throws(call, closed, name)
  }
  store.close() // closing again is a no-op
})

test('Promise versions run off the event loop with the same results and error codes', async (t) => {
  const store = open(t, { actor: 'async-test' })
  const created = await store.createAsync({ name: 'async-key', scopes: [SCOPE] })
  assert.match(created.key, /^ks_/)
  assert.equal(store.verify(created.key, { scopes: [SCOPE] }).code, 'valid')

  const rotated = await store.rotateAsync(created.info.id, { graceMs: 30_000 })
  assert.equal(rotated.info.replaces, created.info.id)
  assert.equal(store.verify(created.key).code, 'valid', 'still in its grace period')

  const revoked = await store.revokeAsync(created.info.id)
  assert.equal(revoked.status, 'revoked')
  assert.equal(store.verify(created.key).code, 'revoked')
  assert.equal(await store.flushAsync(), undefined)
  assert.equal(store.get(created.info.id).useCount, 2)

  await assert.rejects(store.revokeAsync('000000000001'), (err) => {
    assert.ok(err instanceof Error)
    assert.equal(err.code, 'KEYSTEAD_KEY_NOT_FOUND')
    return true
  })
  await assert.rejects(store.rotateAsync(created.info.id), { code: 'KEYSTEAD_INVALID_STATE' })
  await assert.rejects(store.createAsync({ name: '' }), { code: 'KEYSTEAD_INVALID_ARGUMENT' })
  assert.throws(() => store.revokeAsync('bad'), { code: 'KEYSTEAD_INVALID_ARGUMENT' })

  // Many concurrent creations, then close while none is pending.
  const many = await Promise.all(
    Array.from({ length: 20 }, (_, i) => store.createAsync({ name: `bulk-${i}` })),
  )
  assert.equal(new Set(many.map((c) => c.info.id)).size, 20)
  for (const c of many) assert.equal(store.verify(c.key).code, 'valid')
})

test('close() while an async task is pending still flushes and finishes the task', async () => {
  const path = tempStorePath()
  const store = KeyStore.open(path)
  const { key, info } = store.create({ name: 'x' })
  store.verify(key)
  const pending = store.createAsync({ name: 'late' })
  store.close()
  const late = await pending
  const reopened = KeyStore.open(path)
  try {
    assert.equal(reopened.get(info.id).useCount, 1)
    assert.equal(reopened.verify(late.key).code, 'valid')
  } finally {
    reopened.close()
  }
})

test('createMany creates every key in order in one transaction, or none', (t) => {
  const store = KeyStore.open(tempStorePath())
  t.after(() => store.close())
  const later = new Date(Date.now() + 30 * 86_400_000)
  const created = store.createMany([
    { name: 'alice', scopes: ['read', 'write'], metadata: { team: 'a' } },
    { name: 'bob', expiresAt: later },
    { name: 'carol', scopes: null, metadata: null, expiresAt: null },
  ])
  assert.deepEqual(
    created.map((c) => c.info.name),
    ['alice', 'bob', 'carol'],
  )
  assert.deepEqual(created[0].info.scopes, ['read', 'write'])
  assert.deepEqual(created[0].info.metadata, { team: 'a' })
  assert.ok(Math.abs(created[1].info.expiresAt.getTime() - later.getTime()) < 1000)
  for (const c of created) assert.equal(store.verify(c.key).ok, true)
  assert.deepEqual(store.createMany([]), [])

  // One invalid entry: an error, and nothing is created.
  const before = store.list().length
  assert.throws(
    () => store.createMany([{ name: 'ok' }, { name: 'x', scopes: ['a b'] }]),
    { code: 'KEYSTEAD_INVALID_ARGUMENT' },
  )
  assert.throws(() => store.createMany([{ name: 'ok' }, { name: '' }]), {
    code: 'KEYSTEAD_INVALID_ARGUMENT',
  })
  assert.throws(() => store.createMany([{ name: 'ok' }, { scopes: ['a'] }]))
  assert.equal(store.list().length, before)
})
