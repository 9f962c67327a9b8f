//! The async tasks (`createAsync`, `rotateAsync`, `revokeAsync`, `flushAsync`): work off the
//! event loop.

use crate::*;

// ---- work off the event loop ----

/// Turns a core result into the task's JS value, or a rejection with the same error (and
/// `code`) as the synchronous method would throw.
pub(crate) fn settle<T, U>(
    env: Env,
    result: keystead::Result<T>,
    convert: impl FnOnce(T) -> Result<U>,
) -> napi::Result<U> {
    result
        .map_err(to_js_error)
        .and_then(convert)
        .map_err(|err| napi::Error::from(JsError::from(err).into_unknown(env)))
}

/// Runs a task's `compute` body, turning a panic into an error: napi-rs runs `compute` on a
/// libuv thread inside an `extern "C"` callback without catching unwinds, so a panic there
/// would abort the process.
pub(crate) fn compute_caught<T>(body: impl FnOnce() -> keystead::Result<T>) -> keystead::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|_| {
        Err(keystead::Error::Storage(
            "keystead: internal error (panic) in the Node binding".into(),
        ))
    })
}

/// Runs a task's `resolve` body, turning a panic into a rejection (see [`compute_caught`]).
pub(crate) fn resolve_caught<T>(body: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|_| {
        Err(napi::Error::new(
            napi::Status::GenericFailure,
            "keystead: internal error (panic) in the Node binding".to_owned(),
        ))
    })
}

pub(crate) enum KeyOp {
    Create(NewKey),
    Rotate(KeyId, Duration),
}

/// `createAsync` / `rotateAsync`.
pub struct KeyJob {
    pub(crate) store: Arc<Core>,
    pub(crate) op: Option<KeyOp>,
}

#[napi]
impl Task for KeyJob {
    type Output = keystead::Result<keystead::CreatedKey>;
    type JsValue = CreatedKey;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(compute_caught(|| match self.op.take() {
            Some(KeyOp::Create(new)) => self.store.create(new),
            Some(KeyOp::Rotate(id, grace)) => self.store.rotate(id, grace),
            None => Err(keystead::Error::InvalidArgument(
                "the task already ran".into(),
            )),
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        resolve_caught(|| settle(env, output, CreatedKey::try_from))
    }
}

pub(crate) enum InfoOp {
    Revoke(KeyId),
}

/// `revokeAsync`.
pub struct InfoJob {
    pub(crate) store: Arc<Core>,
    pub(crate) op: InfoOp,
}

#[napi]
impl Task for InfoJob {
    type Output = keystead::Result<keystead::KeyInfo>;
    type JsValue = KeyInfo;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(compute_caught(|| match self.op {
            InfoOp::Revoke(id) => self.store.revoke(id),
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        resolve_caught(|| settle(env, output, |changed| info(&changed)))
    }
}

/// `flushAsync`.
pub struct UnitJob {
    pub(crate) store: Arc<Core>,
}

#[napi]
impl Task for UnitJob {
    type Output = keystead::Result<()>;
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(compute_caught(|| self.store.flush()))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        resolve_caught(|| settle(env, output, |()| Ok(())))
    }
}
