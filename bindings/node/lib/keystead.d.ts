// Types of the package's entry point (lib/keystead.js): the generated binding (../index.d.ts)
// plus the Express middleware and the Fastify plugin. Handwritten; ../index.d.ts is generated.
/// <reference types="node" />
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { KeyStore, Verification } from '../index'

export * from '../index'

/** The key a request was accepted with: `req.keystead` / `request.keystead`. */
export type VerifiedKey = NonNullable<Verification['key']>

/** One scope or several. */
export type Scopes = string | readonly string[]

/** A pino-style logger: `logger.warn(fields, message)`. */
export interface KeysteadLogger {
  warn(fields: object, message: string): unknown
  debug?(fields: object, message: string): unknown
}

/** The options of `keystead.express(...)` and `keystead.fastify`. */
export interface KeysteadOptions {
  /** The store keys are verified against. */
  store: KeyStore
  /** Scopes every request must hold (each route can require more). */
  scopes?: Scopes | null
  /** Added to every `WWW-Authenticate` challenge as `realm="..."` (printable ASCII, no `"` or `\`). */
  realm?: string | null
  /** The `Retry-After` of a 503 answered when the store cannot be reached, in seconds (default 5). */
  retryAfter?: number
}

export interface KeysteadExpressOptions extends KeysteadOptions {
  /**
   * Where refusals (`debug`: code, key id, status) and 503s (`warn`) are logged; none by
   * default. Never given the key or the header.
   */
  logger?: KeysteadLogger | null
}

/** Fastify logs through `request.log`. */
export interface KeysteadFastifyOptions extends KeysteadOptions {}

/** An Express middleware. */
export type KeysteadRequestHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  next: (err?: unknown) => void,
) => void

export interface KeysteadExpressMiddleware extends KeysteadRequestHandler {
  /** The same middleware (store, options) requiring these scopes too: for one route. */
  require(...scopes: Scopes[]): KeysteadExpressMiddleware
}

export interface KeysteadExpress {
  /**
   * Lets a request through only if its `Authorization: Bearer <key>` verifies and grants
   * every scope in `options.scopes`; `req.keystead` is then the key's info. Refusals are
   * answered with core's status (400, 401, 403) and `WWW-Authenticate` challenge; an
   * unreachable store with 503 and `Retry-After`; other store errors go to `next(err)`.
   */
  (options: KeysteadExpressOptions): KeysteadExpressMiddleware
  /** Per-route scopes, after `keystead.express({ store })` ran on the request. */
  require(...scopes: Scopes[]): KeysteadRequestHandler
}

/** Route option of the Fastify plugin: `config: { keystead: { scopes: [...] } }`, or `false`: public. */
export interface KeysteadRouteConfig {
  scopes?: Scopes | null
}

/**
 * The Fastify plugin, for `fastify.register(keystead.fastify, options)`; it applies
 * to the whole instance it is registered on, like a fastify-plugin plugin.
 */
export interface KeysteadFastifyPlugin {
  (instance: any, options: KeysteadFastifyOptions, done: (err?: Error) => void): void
}

export declare const express: KeysteadExpress
export declare const fastify: KeysteadFastifyPlugin

declare global {
  namespace Express {
    interface Request {
      /** The key the request was accepted with (set by keystead's middleware). */
      keystead?: VerifiedKey
    }
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The key the request was accepted with (set by keystead's plugin); null on a public route. */
    keystead: VerifiedKey | null
  }
  interface FastifyContextConfig {
    /** keystead's per-route option: more scopes, or `false` for a public route. */
    keystead?: false | KeysteadRouteConfig
  }
}
