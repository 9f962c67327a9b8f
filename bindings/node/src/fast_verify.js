// `KeyStore.prototype.verify` / `verifyHeader` of the Node binding. Not a module: when the
// addon loads, src/verify_path.rs (`install_fast_verify`) compiles this expression once per
// JavaScript environment (main thread, each worker) and calls it with
//   proto      KeyStore.prototype; `verify` and `verifyHeader` replace the napi-rs methods;
//   bindStore  (store) -> the store's native handle; throws unless `store` is a KeyStore;
//   nativeVerifyKey, nativeVerifyHeader
//              (store, handle, value, scope, options) -> payload string or undefined, with
//              the numbers of the result in `out`. `scope` is the only required scope when
//              `options.scopes` is an array of one string (see requiredScope), otherwise
//              undefined and the scopes are read from `options`. They throw
//              KEYSTEAD_INVALID_ARGUMENT for an argument of the wrong type or an invalid
//              scope, KEYSTEAD_CLOSED for a closed store;
//   out        the Float64Array the native functions write the numbers of the result to;
//   tables     JSON text: the tables that give those numbers their meaning and the slots of
//              `out` (see below), built by src/verify_path.rs from core, so they exist only there.
//
// It also wraps `create`, `rotate`, `createAsync` and `rotateAsync` so that their result
// redacts the plaintext key when inspected or serialized (see redactCreated below).
//
// Why (see src/verify_path.rs): napi-rs methods add about 0.75 µs per call, and
// building the key's object through Node-API (12 properties, 4 Dates, an array, an object)
// 2.5-3 µs. Here the native side returns one string and a few numbers, and the key is a
// `KeyInfo` that decodes its fields on first access: reading only `ok` / `code` pays for none.
//
// The payload is `id + name + JSON [scopes, metadata, replaces, replacedBy]` for a valid key,
// or just the id for a refused one (the lengths of id and name in UTF-16 code units in `out`),
// preceded by the `WWW-Authenticate` value when that is not one of the constant ones.
;(function installFastVerify(proto, bindStore, nativeVerifyKey, nativeVerifyHeader, out, tables) {
  'use strict'

  // The tables that give the numbers in `out` their meaning, and the slots of `out`, come
  // from src/verify_path.rs (`tables_json`, built from core's `Outcome` and `KeyStatus`): one
  // source.
  //   codes     index -> verification code (`Outcome::as_str`), read at slot CODE
  //   statuses  index -> key status (`KeyStatus::as_str`), read at slot STATUS
  //   www       index -> constant `WWW-Authenticate` value (null: none), read at slot WWW_KIND
  //   slots     name -> index into `out` (`mod slot` in src/verify_path.rs)
  const { codes: CODES, statuses: STATUSES, www: WWW, slots } = JSON.parse(tables)
  const {
    CODE, // index into CODES
    HTTP_STATUS,
    WWW_KIND, // index into WWW, or -1: the payload starts with the value
    WWW_LEN, // the value's length, when WWW_KIND is -1
    HAS_KEY, // 1: the payload holds a (valid) key; 2: only a refused key's id
    STATUS, // index into STATUSES
    CREATED, // milliseconds since the epoch; NaN: none
    UPDATED,
    EXPIRES,
    LAST_USED,
    USE_COUNT,
    ID_LEN,
    NAME_LEN,
  } = slots
  {
    const used = [CODE, HTTP_STATUS, WWW_KIND, WWW_LEN, HAS_KEY, STATUS, CREATED, UPDATED]
    used.push(EXPIRES, LAST_USED, USE_COUNT, ID_LEN, NAME_LEN)
    // A slot added or renamed on one side only fails the `require`, not a later verify.
    if (!used.every(Number.isInteger) || used.length !== Object.keys(slots).length) {
      throw new Error('keystead: verify_path.rs and fast_verify.js disagree on the result slots')
    }
  }

  const inspectCustom = Symbol.for('nodejs.util.inspect.custom')
  const orNull = (ms) => (Number.isNaN(ms) ? null : ms)
  const copyDate = (date) => (date === null ? null : new Date(date.getTime()))

  // The key of a verification: the fields of `get()`'s info, read-only, decoded on first
  // access. `toJSON()` returns them as a new plain object (JSON.stringify uses it), and
  // util.inspect shows them. It never holds the key's secret or hash.
  class KeyInfo {
    #payload
    #start
    #idEnd
    #nameEnd
    #status
    // Milliseconds until first read, then the Date (the same one on every read); null: none.
    #createdAt
    #updatedAt
    #expiresAt
    #lastUsedAt
    #useCount
    // [scopes, metadata, replaces, replacedBy], parsed on first use.
    #rest

    constructor(payload, start) {
      this.#payload = payload
      this.#start = start
      this.#idEnd = start + out[ID_LEN]
      this.#nameEnd = this.#idEnd + out[NAME_LEN]
      this.#status = STATUSES[out[STATUS]]
      this.#createdAt = out[CREATED]
      this.#updatedAt = out[UPDATED]
      this.#expiresAt = orNull(out[EXPIRES])
      this.#lastUsedAt = orNull(out[LAST_USED])
      this.#useCount = out[USE_COUNT]
      this.#rest = undefined
    }

    #parsed() {
      if (this.#rest === undefined) this.#rest = JSON.parse(this.#payload.slice(this.#nameEnd))
      return this.#rest
    }

    get id() {
      return this.#payload.slice(this.#start, this.#idEnd)
    }

    get name() {
      return this.#payload.slice(this.#idEnd, this.#nameEnd)
    }

    get scopes() {
      return this.#parsed()[0]
    }

    get metadata() {
      return this.#parsed()[1]
    }

    get status() {
      return this.#status
    }

    get createdAt() {
      const at = this.#createdAt
      return typeof at === 'number' ? (this.#createdAt = new Date(at)) : at
    }

    get updatedAt() {
      const at = this.#updatedAt
      return typeof at === 'number' ? (this.#updatedAt = new Date(at)) : at
    }

    get expiresAt() {
      const at = this.#expiresAt
      return typeof at === 'number' ? (this.#expiresAt = new Date(at)) : at
    }

    get lastUsedAt() {
      const at = this.#lastUsedAt
      return typeof at === 'number' ? (this.#lastUsedAt = new Date(at)) : at
    }

    get useCount() {
      return this.#useCount
    }

    get replaces() {
      return this.#parsed()[2]
    }

    get replacedBy() {
      return this.#parsed()[3]
    }

    toJSON() {
      return {
        id: this.id,
        name: this.name,
        scopes: [...this.scopes],
        metadata: { ...this.metadata },
        status: this.status,
        createdAt: copyDate(this.createdAt),
        updatedAt: copyDate(this.updatedAt),
        expiresAt: copyDate(this.expiresAt),
        lastUsedAt: copyDate(this.lastUsedAt),
        useCount: this.useCount,
        replaces: this.replaces,
        replacedBy: this.replacedBy,
      }
    }

    [inspectCustom](depth, options, inspect) {
      if (depth < 0) return options.stylize('[KeyInfo]', 'special')
      const nested = { ...options, depth: options.depth == null ? null : options.depth - 1 }
      return `KeyInfo ${inspect(this.toJSON(), nested)}`
    }
  }

  function result(payload) {
    const kind = out[WWW_KIND]
    let start = 0
    let wwwAuthenticate
    if (kind >= 0) {
      wwwAuthenticate = WWW[kind]
    } else {
      start = out[WWW_LEN]
      wwwAuthenticate = payload.slice(0, start)
    }
    const code = out[CODE]
    const hasKey = out[HAS_KEY]
    return {
      ok: code === 0,
      code: CODES[code],
      // Only a valid key is described; a refused one is named by its id only.
      key: hasKey === 1 ? new KeyInfo(payload, start) : null,
      keyId: hasKey === 0 ? null : payload.slice(start, start + out[ID_LEN]),
      httpStatus: out[HTTP_STATUS],
      wwwAuthenticate,
    }
  }

  // The native handle of each store, kept in a private field of the KeyStore object itself: a
  // base class whose constructor returns its argument lets a subclass add private fields to
  // any object. Private fields are invisible to reflection, inspection and copies.
  class Returns {
    constructor(target) {
      return target
    }
  }
  class StoreHandle extends Returns {
    #handle
    constructor(store, handle) {
      super(store)
      this.#handle = handle
    }

    static of(store) {
      if (typeof store === 'object' && store !== null) {
        if (#handle in store) return store.#handle
        const handle = unstamped.get(store)
        if (handle !== undefined) return handle
      }
      const handle = bindStore(store) // throws unless `store` is a KeyStore
      try {
        new StoreHandle(store, handle) // eslint-disable-line no-new
      } catch {
        unstamped.set(store, handle)
      }
      return handle
    }
  }
  // Stores that refused the private field: frozen ones, on engines that apply
  // non-extensibility to private fields.
  const unstamped = new WeakMap()

  // `options.scopes[0]` when `options.scopes` is an array of one string, the common case, read
  // here because that is cheaper than through Node-API. (Unlike napi-rs, this also accepts a
  // Proxy of such an array.)
  function requiredScope(options) {
    if (typeof options === 'object' && options !== null) {
      const scopes = options.scopes
      if (Array.isArray(scopes) && scopes.length === 1) {
        const scope = scopes[0]
        if (typeof scope === 'string') return scope
      }
    }
    return undefined
  }

  // The same property attributes as the napi-rs methods they replace.
  const method = (value) => ({ value, writable: true, enumerable: true, configurable: true })
  Object.defineProperties(proto, {
    verify: method(function verify(key, options) {
      const handle = StoreHandle.of(this)
      return result(nativeVerifyKey(this, handle, key, requiredScope(options), options))
    }),
    verifyHeader: method(function verifyHeader(value, options) {
      const handle = StoreHandle.of(this)
      return result(nativeVerifyHeader(this, handle, value, requiredScope(options), options))
    }),
  })

  // The results of create / rotate / createMany (and the async variants) hide the plaintext key from
  // util.inspect / console.log and JSON.stringify, which show `key: '[redacted]'`, while
  // `created.key` (and destructuring) still reads it. `key` is non-enumerable, so spreading
  // or Object.assign does not copy it either.
  const REDACTED = '[redacted]'
  function redactCreated(created) {
    if (typeof created !== 'object' || created === null) return created
    const key = created.key
    Object.defineProperty(created, 'key', {
      value: key,
      enumerable: false,
      writable: false,
      configurable: false,
    })
    Object.defineProperties(created, {
      toJSON: {
        value: function toJSON() {
          return { key: REDACTED, info: this.info }
        },
      },
      [inspectCustom]: {
        value: function inspect(depth, options, inspectFn) {
          const shown = { key: REDACTED, info: this.info }
          return typeof inspectFn === 'function'
            ? `CreatedKey ${inspectFn(shown, options)}`
            : shown
        },
      },
    })
    return created
  }
  for (const name of ['create', 'rotate']) {
    const native = proto[name]
    Object.defineProperty(
      proto,
      name,
      method({
        [name](...args) {
          return redactCreated(native.apply(this, args))
        },
      }[name]),
    )
  }
  {
    const native = proto.createMany
    Object.defineProperty(
      proto,
      'createMany',
      method(function createMany(...args) {
        return native.apply(this, args).map(redactCreated)
      }),
    )
  }
  for (const name of ['createAsync', 'rotateAsync']) {
    const native = proto[name]
    Object.defineProperty(
      proto,
      name,
      method({
        [name](...args) {
          return native.apply(this, args).then(redactCreated)
        },
      }[name]),
    )
  }
})
//# sourceURL=keystead/src/fast_verify.js
