//! The raw Node-API verify path behind `verify` / `verifyHeader` (see src/fast_verify.js).

use crate::*;

// ---- the verify path ----
//
// Measured on the 2-CPU benchmark VM (Node 20): a napi-rs method taking verify's arguments
// costs about 0.75 µs more per call than a plain Node-API function reading the same ones
// (argument conversion, per-call borrow tracking); building the key's object through Node-API
// costs 2.5-3 µs, a napi-rs class instance for it 1.8 µs (a verify in core: about 0.5 µs).
// So `verify` / `verifyHeader` are JavaScript functions (src/fast_verify.js, installed over
// the napi-rs methods by `install_fast_verify`) around plain Node-API functions:
// `verify_key_raw` / `verify_header_raw` read the arguments directly (anything unusual goes
// through napi-rs's own conversions; a value of the wrong type is KEYSTEAD_INVALID_ARGUMENT,
// like one of the right type out of bounds), verify, write the numbers
// of the result into a Float64Array shared with the script and return its strings as one
// string. The script builds the result object, and a `KeyInfo` that decodes its fields on
// first access.

/// Slots of the Float64Array shared with src/fast_verify.js (the same names there).
pub(crate) mod slot {
    /// Index into [`super::OUTCOMES`].
    pub const CODE: usize = 0;
    pub const HTTP_STATUS: usize = 1;
    /// Index into [`super::WWW`], or -1: the payload starts with the value.
    pub const WWW_KIND: usize = 2;
    /// The value's length in UTF-16 code units, when `WWW_KIND` is -1.
    pub const WWW_LEN: usize = 3;
    /// 1: the payload holds a (valid) key after the `WWW-Authenticate` value, if any; 2: it
    /// holds only the id of a refused key (`ID_LEN` long); 0: neither.
    pub const HAS_KEY: usize = 4;
    /// Index into [`super::STATUSES`].
    pub const STATUS: usize = 5;
    /// Milliseconds since the epoch; NaN for none.
    pub const CREATED: usize = 6;
    pub const UPDATED: usize = 7;
    pub const EXPIRES: usize = 8;
    pub const LAST_USED: usize = 9;
    pub const USE_COUNT: usize = 10;
    /// Lengths of the id and the name in the payload, in UTF-16 code units.
    pub const ID_LEN: usize = 11;
    pub const NAME_LEN: usize = 12;
    pub const COUNT: usize = 13;
    /// Every slot by the name src/fast_verify.js gives it (see `super::tables_json`).
    pub const NAMES: [(&str, usize); COUNT] = [
        ("CODE", CODE),
        ("HTTP_STATUS", HTTP_STATUS),
        ("WWW_KIND", WWW_KIND),
        ("WWW_LEN", WWW_LEN),
        ("HAS_KEY", HAS_KEY),
        ("STATUS", STATUS),
        ("CREATED", CREATED),
        ("UPDATED", UPDATED),
        ("EXPIRES", EXPIRES),
        ("LAST_USED", LAST_USED),
        ("USE_COUNT", USE_COUNT),
        ("ID_LEN", ID_LEN),
        ("NAME_LEN", NAME_LEN),
    ];
}

/// The outcomes, indexed by `slot::CODE`; src/fast_verify.js gets their codes
/// (`Outcome::as_str`) from [`tables_json`].
pub(crate) const OUTCOMES: [Outcome; 8] = Outcome::ALL;
/// Key statuses, indexed by `slot::STATUS` (names from `KeyStatus::as_str`, see [`tables_json`]).
pub(crate) const STATUSES: [KeyStatus; 4] = [
    KeyStatus::Active,
    KeyStatus::Disabled,
    KeyStatus::Revoked,
    KeyStatus::Expired,
];
/// The constant `WWW-Authenticate` values, indexed by `slot::WWW_KIND` (handed to
/// src/fast_verify.js by [`tables_json`]); any other value travels in the payload.
pub(crate) const WWW: [Option<&str>; 4] = [
    None,
    Some("Bearer"),
    Some("Bearer error=\"invalid_request\""),
    Some("Bearer error=\"invalid_token\""),
];

/// The `tables` argument of src/fast_verify.js, JSON: `codes`, `statuses` and `www` (the
/// tables above, as the strings core gives) and `slots` (name to index of [`slot`]). The
/// script has no copy of its own.
pub(crate) fn tables_json() -> String {
    let mut json = String::from("{\"codes\":[");
    for (i, outcome) in OUTCOMES.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        push_json_string(&mut json, outcome.as_str());
    }
    json.push_str("],\"statuses\":[");
    for (i, status) in STATUSES.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        push_json_string(&mut json, status.as_str());
    }
    json.push_str("],\"www\":[");
    for (i, www) in WWW.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        match www {
            Some(value) => push_json_string(&mut json, value),
            None => json.push_str("null"),
        }
    }
    json.push_str("],\"slots\":{");
    for (i, (name, index)) in slot::NAMES.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        push_json_string(&mut json, name);
        let _ = write!(json, ":{index}");
    }
    json.push_str("}}");
    json
}

pub(crate) const FAST_VERIFY_JS: &str = include_str!("fast_verify.js");

pub(crate) type NativeFn =
    unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// A JavaScript exception is pending: return to JavaScript at once.
pub(crate) struct Thrown;

pub(crate) type Js<T> = std::result::Result<T, Thrown>;

pub(crate) fn throw<S: AsRef<str>>(env: sys::napi_env, err: napi::Error<S>) -> Thrown {
    // SAFETY: `env` is the env of the current callback, on its thread.
    unsafe { JsError::from(err).throw_into(env) };
    Thrown
}

pub(crate) fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(
            napi::Status::from(status),
            format!("keystead: {what} failed"),
        ))
    }
}

/// Replaces `KeyStore.prototype.verify` / `verifyHeader` with those of src/fast_verify.js.
/// Runs once per JavaScript environment (main thread, each worker), after napi-rs registered
/// the classes; an error here fails the `require`.
#[napi(module_exports, catch_unwind)]
pub fn install_fast_verify(exports: Object<'_>, env: Env) -> napi::Result<()> {
    let env = env.raw();
    // SAFETY: Node-API calls on the env being initialised, with handles made here.
    unsafe {
        let mut class = ptr::null_mut();
        check(
            sys::napi_get_named_property(env, exports.raw(), c"KeyStore".as_ptr(), &mut class),
            "reading KeyStore",
        )?;
        let mut proto = ptr::null_mut();
        check(
            sys::napi_get_named_property(env, class, c"prototype".as_ptr(), &mut proto),
            "reading KeyStore.prototype",
        )?;
        // The verify functions write the result through `data`, the ArrayBuffer's memory
        // (allocated by V8, it never moves). They are only referenced from the script's
        // closure, which also holds the buffer, so the buffer lives as long as they can run.
        let mut data: *mut c_void = ptr::null_mut();
        let mut buffer = ptr::null_mut();
        check(
            sys::napi_create_arraybuffer(env, slot::COUNT * 8, &mut data, &mut buffer),
            "creating the result buffer",
        )?;
        let mut out = ptr::null_mut();
        check(
            sys::napi_create_typedarray(
                env,
                sys::TypedarrayType::float64_array,
                slot::COUNT,
                buffer,
                0,
                &mut out,
            ),
            "creating the result array",
        )?;
        let function = |name: &std::ffi::CStr, callback: NativeFn| -> napi::Result<_> {
            let mut value = ptr::null_mut();
            check(
                sys::napi_create_function(
                    env,
                    name.as_ptr(),
                    name.count_bytes() as isize,
                    Some(callback),
                    data,
                    &mut value,
                ),
                "creating a function",
            )?;
            Ok(value)
        };
        let bind = function(c"bindStore", bind_store)?;
        let verify_key = function(c"verifyKey", verify_key_raw)?;
        let verify_header = function(c"verifyHeader", verify_header_raw)?;
        let mut source = ptr::null_mut();
        check(
            sys::napi_create_string_utf8(
                env,
                FAST_VERIFY_JS.as_ptr().cast(),
                FAST_VERIFY_JS.len() as isize,
                &mut source,
            ),
            "creating the script source",
        )?;
        let tables_text = tables_json();
        let mut tables = ptr::null_mut();
        check(
            sys::napi_create_string_utf8(
                env,
                tables_text.as_ptr().cast(),
                tables_text.len() as isize,
                &mut tables,
            ),
            "creating the tables",
        )?;
        let mut install = ptr::null_mut();
        check(
            sys::napi_run_script(env, source, &mut install),
            "compiling src/fast_verify.js",
        )?;
        let mut undefined = ptr::null_mut();
        check(
            sys::napi_get_undefined(env, &mut undefined),
            "napi_get_undefined",
        )?;
        let args = [proto, bind, verify_key, verify_header, out, tables];
        let mut ignored = ptr::null_mut();
        check(
            sys::napi_call_function(
                env,
                undefined,
                install,
                args.len(),
                args.as_ptr(),
                &mut ignored,
            ),
            "installing verify",
        )?;
    }
    Ok(())
}

/// Runs `body` with the callback's arguments and `data` pointer; a panic becomes a JS error.
pub(crate) fn callback<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    body: impl FnOnce(&[sys::napi_value; N], *mut c_void) -> Js<sys::napi_value>,
) -> sys::napi_value {
    let call = std::panic::AssertUnwindSafe(|| {
        let mut argc = N;
        let mut argv = [ptr::null_mut(); N];
        let mut data = ptr::null_mut();
        // SAFETY: the callback's own env and info; missing arguments read as undefined.
        let status = unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                &mut data,
            )
        };
        check(status, "napi_get_cb_info").map_err(|e| throw(env, e))?;
        body(&argv, data)
    });
    match std::panic::catch_unwind(call) {
        Ok(Ok(value)) => value,
        Ok(Err(Thrown)) => ptr::null_mut(),
        Err(_) => {
            throw(
                env,
                napi::Error::new(
                    STORE,
                    "keystead: internal error (panic) in verify".to_owned(),
                ),
            );
            ptr::null_mut()
        }
    }
}

/// `bindStore(store)`: the store's handle for the verify functions, an External holding the
/// `KeyStore` napi-rs wrapped in `store`. Anything but a KeyStore gets the TypeError V8 throws
/// for a napi-rs method called on a wrong receiver.
///
/// The script keeps the handle in a private field of `store` (so it lives exactly as long as
/// the object that owns the `KeyStore`) and passes `store` along with it on every call, which
/// keeps the object, hence the `KeyStore`, alive while the call runs. That saves the two
/// private-property lookups of the type-tag check and `napi_unwrap` on each verify.
pub(crate) unsafe extern "C" fn bind_store(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    callback::<1>(env, info, |&[store], _| {
        // Only a KeyStore made by napi-rs carries its type tag (napi8), and napi-rs wraps it
        // as a `Box<KeyStore>`. (The tag check throws for null and undefined, hence the type
        // check first.)
        let mut tagged = false;
        if js_type(env, store).map_err(|e| throw(env, e))? == sys::ValueType::napi_object {
            // SAFETY: the current callback's env and a live object handle of it; the tag
            // outlives the call.
            let status = unsafe {
                sys::napi_check_object_type_tag(
                    env,
                    store,
                    &<KeyStore as TypeTag>::type_tag(),
                    &mut tagged,
                )
            };
            check(status, "napi_check_object_type_tag").map_err(|e| throw(env, e))?;
        }
        if !tagged {
            // SAFETY: the current callback's env, no exception pending.
            unsafe { sys::napi_throw_type_error(env, ptr::null(), c"Illegal invocation".as_ptr()) };
            return Err(Thrown);
        }
        let mut wrapped = ptr::null_mut();
        // SAFETY: `store` carries KeyStore's type tag, so napi-rs wrapped a KeyStore in it.
        check(
            unsafe { sys::napi_unwrap(env, store, &mut wrapped) },
            "napi_unwrap",
        )
        .map_err(|e| throw(env, e))?;
        let mut handle = ptr::null_mut();
        // SAFETY: the current callback's env; no finalizer, so the External never frees
        // `wrapped` (napi-rs's wrap owns it).
        check(
            unsafe { sys::napi_create_external(env, wrapped, None, ptr::null_mut(), &mut handle) },
            "napi_create_external",
        )
        .map_err(|e| throw(env, e))?;
        Ok(handle)
    })
}

/// `nativeVerifyKey(store, handle, key, scope, options)` of src/fast_verify.js.
pub(crate) unsafe extern "C" fn verify_key_raw(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: `argv` are this callback's handles; `data` is the result buffer given to
    // `napi_create_function` by `install_fast_verify`.
    callback::<5>(env, info, |argv, data| unsafe {
        fast_verify(env, false, argv, data)
    })
}

/// `nativeVerifyHeader(store, handle, value, scope, options)` of src/fast_verify.js.
pub(crate) unsafe extern "C" fn verify_header_raw(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: as in `verify_key_raw`.
    callback::<5>(env, info, |argv, data| unsafe {
        fast_verify(env, true, argv, data)
    })
}

/// The most bytes of a key or header read without allocating.
pub(crate) const STACK_TEXT: usize = 256;
/// The most required scopes, and their total bytes, read without allocating.
pub(crate) const STACK_SCOPES: usize = 8;
pub(crate) const STACK_SCOPE_BYTES: usize = 256;

/// Copies `value` into `buf` and returns it, or `None` if it is not a string or may not have
/// fit.
///
/// # Safety
/// `value` is a live handle of the current callback.
pub(crate) unsafe fn read_into(
    env: sys::napi_env,
    value: sys::napi_value,
    buf: &mut [MaybeUninit<u8>],
) -> Option<&str> {
    let mut len = 0;
    // Fails with napi_string_expected, and nothing else happens, for other types.
    // SAFETY: `value` is live (the caller's contract); napi writes at most `buf.len()` bytes.
    let status = unsafe {
        sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), buf.len(), &mut len)
    };
    // napi writes at most `buf.len() - 1` bytes and the NUL, and stops before a character
    // that does not fit (up to 4 bytes): a shorter output is the whole string.
    if status != sys::Status::napi_ok || len + 4 >= buf.len() {
        return None;
    }
    // SAFETY: napi initialised the first `len` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
    std::str::from_utf8(bytes).ok()
}

/// The text to verify: a string, or "" for null / undefined; any other type is
/// `KEYSTEAD_INVALID_ARGUMENT` (`what` names the argument).
///
/// # Safety
/// `value` is a live handle of the current callback.
pub(crate) unsafe fn read_text<'a>(
    env: sys::napi_env,
    value: sys::napi_value,
    what: &str,
    buf: &'a mut [MaybeUninit<u8>; STACK_TEXT],
    heap: &'a mut String,
) -> Js<&'a str> {
    // SAFETY: `value` is live (this function's contract).
    if let Some(text) = unsafe { read_into(env, value, buf) } {
        return Ok(text);
    }
    // Longer strings, null / undefined, and other types.
    match js_type(env, value).map_err(|e| throw(env, e))? {
        sys::ValueType::napi_string => {
            // SAFETY: a live handle of the current callback, a string.
            *heap = unsafe { String::from_napi_value(env, value) }.map_err(|e| throw(env, e))?;
        }
        sys::ValueType::napi_undefined | sys::ValueType::napi_null => heap.clear(),
        _ => {
            return Err(throw(
                env,
                invalid(format!("{what} must be a string, null or undefined")),
            ))
        }
    }
    Ok(heap)
}

pub(crate) fn js_type(
    env: sys::napi_env,
    value: sys::napi_value,
) -> napi::Result<sys::napi_valuetype> {
    let mut kind = 0;
    // SAFETY: a live handle of the current callback.
    check(
        unsafe { sys::napi_typeof(env, value, &mut kind) },
        "napi_typeof",
    )?;
    Ok(kind)
}

/// `options.scopes`, read without allocating when `options` is null, undefined or an object
/// whose `scopes` is null, undefined or an array of a few short strings. Returns `None` for
/// anything else, which napi-rs's conversion of `VerifyOptions` then decides.
///
/// # Safety
/// `options` is a live handle of the current callback.
pub(crate) unsafe fn read_scopes<'a>(
    env: sys::napi_env,
    options: sys::napi_value,
    bytes: &'a mut [MaybeUninit<u8>; STACK_SCOPE_BYTES],
    scopes: &mut [&'a str; STACK_SCOPES],
) -> napi::Result<Option<usize>> {
    match js_type(env, options)? {
        sys::ValueType::napi_undefined | sys::ValueType::napi_null => return Ok(Some(0)),
        sys::ValueType::napi_object => {}
        _ => return Ok(None),
    }
    let mut list = ptr::null_mut();
    // SAFETY: `options` is a live object handle; the name is a NUL-terminated literal.
    check(
        unsafe { sys::napi_get_named_property(env, options, c"scopes".as_ptr(), &mut list) },
        "reading options.scopes",
    )?;
    match js_type(env, list)? {
        sys::ValueType::napi_undefined | sys::ValueType::napi_null => return Ok(Some(0)),
        sys::ValueType::napi_object => {}
        _ => return Ok(None),
    }
    let mut is_array = false;
    // SAFETY: `list` is a live handle made in this callback.
    check(
        unsafe { sys::napi_is_array(env, list, &mut is_array) },
        "napi_is_array",
    )?;
    let mut count = 0;
    // SAFETY: `list` is a live handle made in this callback (an array when this runs).
    if !is_array
        || check(
            unsafe { sys::napi_get_array_length(env, list, &mut count) },
            "napi_get_array_length",
        )
        .is_err()
        || count as usize > STACK_SCOPES
    {
        return Ok(None);
    }
    // Each scope is read into the start of what is left of `bytes`.
    let mut rest: &'a mut [MaybeUninit<u8>] = bytes;
    for i in 0..count {
        let mut item = ptr::null_mut();
        // SAFETY: `list` is a live array handle made in this callback.
        check(
            unsafe { sys::napi_get_element(env, list, i, &mut item) },
            "reading a scope",
        )?;
        // SAFETY: `item` is a live handle made in this callback.
        let Some(len) = (unsafe { read_into(env, item, rest) }).map(str::len) else {
            return Ok(None);
        };
        let (filled, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        // SAFETY: `read_into` initialised these `len` bytes with valid UTF-8.
        scopes[i as usize] = unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(
                filled.as_ptr().cast::<u8>(),
                len,
            ))
        };
    }
    Ok(Some(count as usize))
}

/// The work of `verify_key_raw` / `verify_header_raw`.
///
/// # Safety
/// `argv` holds live handles of the current callback; `data` is the result buffer of
/// `install_fast_verify`.
pub(crate) unsafe fn fast_verify(
    env: sys::napi_env,
    header: bool,
    argv: &[sys::napi_value; 5],
    data: *mut c_void,
) -> Js<sys::napi_value> {
    // `_store` is only passed to keep the object that owns the KeyStore alive (see
    // `bind_store`).
    let [_store, handle, value, scope, options] = *argv;
    let mut wrapped = ptr::null_mut();
    // SAFETY: `handle` is a live handle of the current callback (an External from
    // `bind_store`, or napi reports an error).
    check(
        unsafe { sys::napi_get_value_external(env, handle, &mut wrapped) },
        "napi_get_value_external",
    )
    .map_err(|e| throw(env, e))?;
    // SAFETY: only `bind_store` makes the handles the script passes, each from the live
    // `Box<KeyStore>` of the store passed with it; KeyStore is only ever borrowed shared.
    let store = unsafe { &*wrapped.cast::<KeyStore>() };

    let mut text_buf = [MaybeUninit::uninit(); STACK_TEXT];
    let stack = text_buf.as_ptr_range();
    // A longer text's copy is wiped when this drops; the stack copy below, after the check.
    let mut text_heap = Zeroizing::new(String::new());
    let what = if header {
        "the Authorization value"
    } else {
        "the key"
    };
    // SAFETY: `value` is a live handle of the current callback (this function's contract).
    let text = unsafe { read_text(env, value, what, &mut text_buf, &mut text_heap) }?;
    // How much of `text_buf` napi may have written: the text and its NUL, or (for a text
    // that did not fit and was read again onto the heap) all of it.
    let on_stack = stack.contains(&text.as_ptr().cast());
    let written = if on_stack {
        (text.len() + 1).min(STACK_TEXT)
    } else {
        STACK_TEXT
    };

    // `scope`: the only required scope, when the script found `options.scopes` to be an
    // array of one string; otherwise the scopes come from `options`.
    let mut one_bytes = [MaybeUninit::uninit(); STACK_SCOPE_BYTES];
    let mut scope_bytes = [MaybeUninit::uninit(); STACK_SCOPE_BYTES];
    let mut scope_array = [""; STACK_SCOPES];
    let slow: Vec<String>;
    let slow_strs: Vec<&str>;
    let one: [&str; 1];
    // SAFETY (both reads): `scope` and `options` are live handles of the current callback.
    let scopes: &[&str] = match unsafe { read_into(env, scope, &mut one_bytes) } {
        Some(scope) => {
            one = [scope];
            &one
        }
        None => match unsafe { read_scopes(env, options, &mut scope_bytes, &mut scope_array) }
            .map_err(|e| throw(env, e))?
        {
            Some(count) => &scope_array[..count],
            None => {
                // napi-rs reads properties of any value (`5` converts as `{}`): only an
                // object, null or undefined is options.
                let kind = js_type(env, options).map_err(|e| throw(env, e))?;
                if !matches!(
                    kind,
                    sys::ValueType::napi_object
                        | sys::ValueType::napi_null
                        | sys::ValueType::napi_undefined
                ) {
                    return Err(throw(env, invalid(VERIFY_OPTIONS)));
                }
                // SAFETY: `options` is a live handle of the current callback.
                let options = unsafe { Option::<VerifyOptions>::from_napi_value(env, options) }
                    .map_err(|e| verify_options_error(env, e))?;
                slow = scopes_of(options);
                slow_strs = as_strs(&slow);
                &slow_strs
            }
        },
    };

    let checked = {
        // Held only for the check (close() takes it on this same thread).
        let inner = store.inner.read().unwrap_or_else(|p| p.into_inner());
        let core = inner.as_ref().ok_or_else(|| throw(env, closed()))?;
        if header {
            core.verify_header(text, scopes)
        } else {
            core.verify(text, scopes)
        }
    };
    wipe(&mut text_buf[..written]);
    let checked = checked.map_err(|e| throw(env, to_js_error(e)))?;
    // SAFETY: `data` is the result buffer, slot::COUNT f64s (see `install_fast_verify`);
    // only this thread uses it, and no JavaScript runs while this reference is held.
    let out = unsafe { &mut *data.cast::<[f64; slot::COUNT]>() };
    write_result(env, &checked, out)
}

/// The error for `verify` options that napi-rs could not convert: a JavaScript exception
/// (thrown by a getter) stays pending as it is; a value of the wrong type (napi-rs's
/// `ObjectExpected`, `ArrayExpected`, `StringExpected`) is `KEYSTEAD_INVALID_ARGUMENT`, as a
/// bad value of the right type is.
pub(crate) fn verify_options_error(env: sys::napi_env, err: napi::Error) -> Thrown {
    if err.status == napi::Status::PendingException {
        return throw(env, err);
    }
    throw(env, invalid(VERIFY_OPTIONS))
}

pub(crate) const VERIFY_OPTIONS: &str =
    "verify options must be an object whose `scopes` is an array of strings, null or undefined";

/// Overwrites a copy of a presented key with zeros, in writes the compiler may not drop.
pub(crate) fn wipe(buf: &mut [MaybeUninit<u8>]) {
    for byte in buf.iter_mut() {
        // SAFETY: a valid, aligned, exclusively borrowed byte.
        unsafe { ptr::write_volatile(byte, MaybeUninit::new(0)) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

pub(crate) fn utf16_len(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.encode_utf16().count()
    }
}

/// Milliseconds since the epoch, rounded down: what chrono's `timestamp_millis` gives, as
/// the other methods' `Date`s hold.
pub(crate) fn millis_f64(time: SystemTime) -> f64 {
    let whole = |d: Duration| {
        d.as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_millis()))
    };
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => whole(after) as f64,
        Err(before) => {
            let before = before.duration();
            let partial = u64::from(before.subsec_nanos() % 1_000_000 != 0);
            -(whole(before).saturating_add(partial) as f64)
        }
    }
}

/// Appends `text` as a JSON string.
pub(crate) fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    if !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(text);
        out.push('"');
        return;
    }
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub(crate) fn push_json_id(out: &mut String, id: Option<KeyId>) {
    match id {
        Some(id) => {
            let _ = write!(out, "\"{id}\"");
        }
        None => out.push_str("null"),
    }
}

/// `slot::CODE` of an outcome: its index in [`OUTCOMES`].
pub(crate) fn code_index(outcome: Outcome) -> napi::Result<usize> {
    OUTCOMES
        .iter()
        .position(|known| *known == outcome)
        .ok_or_else(|| unknown(outcome.as_str()))
}

/// `slot::STATUS` of a status: its index in [`STATUSES`].
pub(crate) fn status_index(status: KeyStatus) -> napi::Result<usize> {
    STATUSES
        .iter()
        .position(|known| *known == status)
        .ok_or_else(|| unknown(status.as_str()))
}

/// `slot::WWW_KIND` of a `WWW-Authenticate` value: its index in [`WWW`], or `None`.
pub(crate) fn www_index(www: Option<&str>) -> Option<usize> {
    WWW.iter().position(|known| *known == www)
}

/// A value added to core that this binding does not map yet (a bug here, never silent).
pub(crate) fn unknown(what: &str) -> napi::Error {
    napi::Error::new(
        napi::Status::GenericFailure,
        format!("keystead: the Node binding does not know the value `{what}`"),
    )
}

/// Fills `out` and returns the payload (see src/fast_verify.js), or undefined.
pub(crate) fn write_result(
    env: sys::napi_env,
    checked: &keystead::Verification,
    out: &mut [f64; slot::COUNT],
) -> Js<sys::napi_value> {
    let code = code_index(checked.outcome()).map_err(|e| throw(env, e))?;
    out[slot::CODE] = code as f64;
    out[slot::HTTP_STATUS] = f64::from(checked.http_status());
    PAYLOAD.with_borrow_mut(|payload| {
        payload.clear();
        fill_payload(env, checked, out, payload)
    })
}

thread_local! {
    /// The buffer `write_result` builds payloads in, kept between calls.
    static PAYLOAD: RefCell<String> = const { RefCell::new(String::new()) };
}

pub(crate) fn fill_payload(
    env: sys::napi_env,
    checked: &keystead::Verification,
    out: &mut [f64; slot::COUNT],
    payload: &mut String,
) -> Js<sys::napi_value> {
    let www = checked.www_authenticate();
    match www_index(www.as_deref()) {
        Some(kind) => out[slot::WWW_KIND] = kind as f64,
        None => {
            let www = www.unwrap_or_default();
            out[slot::WWW_KIND] = -1.0;
            out[slot::WWW_LEN] = utf16_len(&www) as f64;
            payload.push_str(&www);
        }
    }
    let Some(info) = checked.key() else {
        if let Some(id) = checked.key_id() {
            // A refused key: its id only.
            out[slot::HAS_KEY] = 2.0;
            let start = payload.len();
            let _ = write!(payload, "{id}");
            out[slot::ID_LEN] = utf16_len(&payload[start..]) as f64;
            return js_string(env, payload);
        }
        out[slot::HAS_KEY] = 0.0;
        if payload.is_empty() {
            let mut undefined = ptr::null_mut();
            // SAFETY: the current callback's env.
            check(
                unsafe { sys::napi_get_undefined(env, &mut undefined) },
                "napi_get_undefined",
            )
            .map_err(|e| throw(env, e))?;
            return Ok(undefined);
        }
        return js_string(env, payload);
    };
    // Only a valid verification has a key, and a valid key was active at the check: what
    // `status()` would say, without reading the clock again.
    let status = status_index(KeyStatus::Active).map_err(|e| throw(env, e))?;
    out[slot::HAS_KEY] = 1.0;
    out[slot::STATUS] = status as f64;
    out[slot::CREATED] = millis_f64(info.created_at());
    out[slot::UPDATED] = millis_f64(info.updated_at());
    out[slot::EXPIRES] = info.expires_at().map_or(f64::NAN, millis_f64);
    out[slot::LAST_USED] = info.last_used_at().map_or(f64::NAN, millis_f64);
    out[slot::USE_COUNT] = i64::try_from(info.use_count()).unwrap_or(i64::MAX) as f64;

    // id + name + JSON [scopes, metadata, replaces, replacedBy]
    payload.reserve(64 + info.name().len());
    let start = payload.len();
    let _ = write!(payload, "{}", info.id());
    out[slot::ID_LEN] = utf16_len(&payload[start..]) as f64;
    payload.push_str(info.name());
    out[slot::NAME_LEN] = utf16_len(info.name()) as f64;
    payload.push_str("[[");
    for (i, scope) in info.scopes().iter().enumerate() {
        if i > 0 {
            payload.push(',');
        }
        push_json_string(payload, scope);
    }
    payload.push_str("],{");
    for (i, (key, value)) in info.metadata().iter().enumerate() {
        if i > 0 {
            payload.push(',');
        }
        push_json_string(payload, key);
        payload.push(':');
        push_json_string(payload, value);
    }
    payload.push_str("},");
    push_json_id(payload, info.replaces());
    payload.push(',');
    push_json_id(payload, info.replaced_by());
    payload.push(']');
    js_string(env, payload)
}

pub(crate) fn js_string(env: sys::napi_env, text: &str) -> Js<sys::napi_value> {
    let mut value = ptr::null_mut();
    // SAFETY: the current callback's env; `text` is valid UTF-8 of the given length (and
    // ASCII, a subset of Latin-1, in the first case: no decoding needed).
    let status = unsafe {
        if text.is_ascii() {
            sys::napi_create_string_latin1(
                env,
                text.as_ptr().cast(),
                text.len() as isize,
                &mut value,
            )
        } else {
            sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut value)
        }
    };
    check(status, "napi_create_string_utf8").map_err(|e| throw(env, e))?;
    Ok(value)
}
