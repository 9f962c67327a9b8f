'use strict'
// Fastify plugin (tested with Fastify 5): `fastify.register(keystead.fastify, { store, scopes })` checks
// every request of the instance it is registered on (not only of its own encapsulated
// context, like a plugin wrapped by fastify-plugin), in an `onRequest` hook: before the body
// is read. Per route, `config: { keystead: { scopes: [...] } }` adds scopes and
// `config: { keystead: false }` makes the route public. See lib/common.js.
const {
  authenticate,
  authorizationOf,
  compileOptions,
  configError,
  checkScopes,
  emit,
  scopeList,
} = require('./common')

const WHERE = 'keystead.fastify'

/**
 * The scopes a route requires (the plugin's plus its own), or null for a public route.
 * `routeConfig` is the route's `config` object; compiled once per route.
 */
function routeScopes(config, routeConfig, cache) {
  if (routeConfig === null || typeof routeConfig !== 'object') return config.scopes
  let scopes = cache.get(routeConfig)
  if (scopes === undefined) {
    scopes = compileRoute(config, routeConfig.keystead, routeConfig.url)
    cache.set(routeConfig, scopes)
  }
  return scopes
}

function compileRoute(config, setting, url) {
  const where = `${WHERE}: route ${url ?? ''} config.keystead`
  if (setting === undefined || setting === null || setting === true) return config.scopes
  if (setting === false) return null
  if (typeof setting !== 'object') {
    throw configError(where, 'must be false (public) or { scopes: [...] }')
  }
  const scopes = [...config.scopes]
  for (const s of scopeList(setting.scopes, where)) if (!scopes.includes(s)) scopes.push(s)
  checkScopes(config.store, scopes)
  return scopes
}

function keysteadFastify(instance, options, done) {
  let config
  try {
    config = compileOptions(options, WHERE)
  } catch (err) {
    return done(err)
  }
  const cache = new WeakMap()

  if (!instance.hasRequestDecorator('keystead')) instance.decorateRequest('keystead', null)

  // A route registered after the plugin has its config checked now, at startup.
  instance.addHook('onRoute', (route) => {
    if (route.config && typeof route.config === 'object') routeScopes(config, route.config, cache)
  })

  instance.addHook('onRequest', (request, reply, next) => {
    let result
    try {
      const scopes = routeScopes(config, request.routeOptions.config, cache)
      if (scopes === null) return next()
      result = authenticate(request, authorizationOf(request.raw), config, scopes)
    } catch (err) {
      // Any other operational failure: Fastify's error handler (a 500 without a stack).
      return next(err)
    }
    if (result.ok) {
      request.keystead = result.key
      return next()
    }
    emit(request.log, result.log)
    reply.code(result.status).headers(result.headers).send(result.body)
  })
  done()
}

// Apply to the instance it is registered on, as fastify-plugin does (without depending on it).
keysteadFastify[Symbol.for('skip-override')] = true
keysteadFastify[Symbol.for('fastify.display-name')] = 'keystead'
keysteadFastify[Symbol.for('plugin-meta')] = { name: 'keystead' }

module.exports = keysteadFastify
