'use strict'
// Express middleware (tested with Express 4 and 5): `app.use(keystead.express({ store, scopes }))` and, per route,
// `keystead.express.require('scope', ...)`. See lib/common.js for what is decided where.
const {
  STATE,
  authenticate,
  authorizationOf,
  compileOptions,
  configError,
  emit,
  scopeList,
} = require('./common')

/** Answers a refusal with `res.status`, `res.set` and `res.json`. */
function refuse(res, refusal) {
  res.status(refusal.status)
  for (const [name, value] of Object.entries(refusal.headers)) res.set(name, value)
  res.json(refusal.body)
}

/** Checks the request against `scopes` and lets it through, refuses it, or passes an error on. */
function check(req, res, next, config, scopes) {
  let result
  try {
    result = authenticate(req, authorizationOf(req), config, scopes)
  } catch (err) {
    // An operational failure other than an unreachable store (KEYSTEAD_STORE_ERROR,
    // KEYSTEAD_CLOSED, ...): the application's error handler decides. Its message never
    // holds the key.
    return next(err)
  }
  if (result.ok) {
    req.keystead = result.key
    return next()
  }
  emit(config.logger, result.log)
  refuse(res, result)
}

function middleware(options, where) {
  const config = compileOptions(options, where)
  const { scopes } = config
  function keysteadMiddleware(req, res, next) {
    check(req, res, next, config, scopes)
  }
  // Per-route scopes on top of this middleware's, with the same store and options.
  keysteadMiddleware.require = (...required) =>
    middleware({ ...options, scopes: [...scopes, ...flatScopes(required, where)] }, where)
  return keysteadMiddleware
}

function flatScopes(args, where) {
  return args.flatMap((s) => scopeList(s, `${where}.require`))
}

/**
 * The middleware: lets a request through only if its `Authorization: Bearer <key>` verifies
 * and grants every scope in `options.scopes`; the key's info is then `req.keystead`.
 */
function express(options) {
  return middleware(options, 'keystead.express')
}

/**
 * Per-route scopes, after `app.use(keystead.express({ store }))` (or a router's): the key
 * that middleware accepted must also grant these scopes. A key that does not is answered by
 * core's 403 `insufficient_scope` challenge, listing every scope required so far.
 */
express.require = function requireScopes(...required) {
  const scopes = flatScopes(required, 'keystead.express')
  // The store is the one of the middleware that ran first on the request; its options
  // (realm, retryAfter, logger) come with it.
  return function keysteadRequire(req, res, next) {
    const state = req[STATE]
    if (state === undefined) {
      return next(
        configError(
          'keystead.express.require',
          'no keystead.express({ store }) middleware ran before it on this request',
        ),
      )
    }
    check(req, res, next, state.config, scopes)
  }
}

module.exports = express
