//! WIT values to JavaScript and back, on QuickJS's C API: property names
//! interned once per instance, objects filled with `JS_DefinePropertyValue`
//! (no prototype-chain walk for setters), arrays made whole with
//! `JS_NewArrayFrom`, and no wrapper object per value. In a reused
//! instance this is about half of a call's instructions; rquickjs's typed
//! API cost 17% more per call.
//!
//! The shapes are componentize-js's: records are objects with camelCase
//! fields, enums their WIT names, an absent `option` is `undefined`.

use herald_sdk::{CorsMode, Decision, Delivery, Destination, Hint, Request};
use rquickjs::qjs::{self, JSAtom, JSContext, JSValue};

/// The property names marshalling uses, interned once per instance.
pub(crate) struct Atoms {
    method: JSAtom,
    scheme: JSAtom,
    authority: JSAtom,
    path: JSAtom,
    query: JSAtom,
    headers: JSAtom,
    cookies: JSAtom,
    push_enabled: JSAtom,
    variant_name: JSAtom,
    name: JSAtom,
    value: JSAtom,
    urgency: JSAtom,
    incremental: JSAtom,
    weight: JSAtom,
    destination: JSAtom,
    crossorigin: JSAtom,
    copy_headers: JSAtom,
    delivery: JSAtom,
}

impl Atoms {
    /// # Safety
    /// `ctx` is a live context, which outlives the atoms (freed by
    /// [`Atoms::free`] before it goes).
    pub(crate) unsafe fn new(ctx: *mut JSContext) -> Atoms {
        let a = |s: &str| unsafe { qjs::JS_NewAtomLen(ctx, s.as_ptr().cast(), s.len() as _) };
        Atoms {
            method: a("method"),
            scheme: a("scheme"),
            authority: a("authority"),
            path: a("path"),
            query: a("query"),
            headers: a("headers"),
            cookies: a("cookies"),
            push_enabled: a("pushEnabled"),
            variant_name: a("variantName"),
            name: a("name"),
            value: a("value"),
            urgency: a("urgency"),
            incremental: a("incremental"),
            weight: a("weight"),
            destination: a("destination"),
            crossorigin: a("crossorigin"),
            copy_headers: a("copyHeaders"),
            delivery: a("delivery"),
        }
    }
}

impl Atoms {
    /// # Safety
    /// `ctx` is the live context the atoms were made in; they are not used again.
    pub(crate) unsafe fn free(&self, ctx: *mut JSContext) {
        for atom in [
            self.method,
            self.scheme,
            self.authority,
            self.path,
            self.query,
            self.headers,
            self.cookies,
            self.push_enabled,
            self.variant_name,
            self.name,
            self.value,
            self.urgency,
            self.incremental,
            self.weight,
            self.destination,
            self.crossorigin,
            self.copy_headers,
            self.delivery,
        ] {
            unsafe { qjs::JS_FreeAtom(ctx, atom) };
        }
    }
}

/// A JavaScript value this code owns, freed when dropped.
pub(crate) struct Owned {
    ctx: *mut JSContext,
    v: JSValue,
}

impl Owned {
    /// # Safety
    /// `v` is a value of the live context `ctx` whose reference the caller
    /// hands over, and `ctx` outlives the `Owned`.
    pub(crate) unsafe fn new(ctx: *mut JSContext, v: JSValue) -> Owned {
        Owned { ctx, v }
    }

    pub(crate) fn value(&self) -> JSValue {
        self.v
    }

    fn tag(&self) -> i32 {
        unsafe { qjs::JS_VALUE_GET_NORM_TAG(self.v) }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        unsafe { qjs::JS_FreeValue(self.ctx, self.v) }
    }
}

unsafe fn string(ctx: *mut JSContext, s: &str) -> JSValue {
    unsafe { qjs::JS_NewStringLen(ctx, s.as_ptr().cast(), s.len() as _) }
}

/// Adds `value` (owned) to the new object `obj`.
unsafe fn define(ctx: *mut JSContext, obj: JSValue, atom: JSAtom, value: JSValue) {
    unsafe { qjs::JS_DefinePropertyValue(ctx, obj, atom, value, qjs::JS_PROP_C_W_E as i32) };
}

unsafe fn pairs(ctx: *mut JSContext, atoms: &Atoms, list: &[(String, String)]) -> JSValue {
    let mut items: Vec<JSValue> = Vec::with_capacity(list.len());
    for (name, value) in list {
        unsafe {
            let pair = qjs::JS_NewObject(ctx);
            define(ctx, pair, atoms.name, string(ctx, name));
            define(ctx, pair, atoms.value, string(ctx, value));
            items.push(pair);
        }
    }
    unsafe { qjs::JS_NewArrayFrom(ctx, items.len() as i32, items.as_ptr()) }
}

/// The WIT `request` as a JavaScript object (owned by the caller). Failures
/// (out of memory) leave an exception pending and some fields out.
///
/// # Safety
/// `ctx` is the live context `atoms` was made in.
pub(crate) unsafe fn request(ctx: *mut JSContext, atoms: &Atoms, req: &Request) -> JSValue {
    unsafe {
        let o = qjs::JS_NewObject(ctx);
        define(ctx, o, atoms.method, string(ctx, req.method()));
        define(ctx, o, atoms.scheme, string(ctx, req.scheme()));
        define(ctx, o, atoms.authority, string(ctx, req.authority()));
        define(ctx, o, atoms.path, string(ctx, req.path()));
        let query = match req.query() {
            Some(q) => string(ctx, q),
            None => qjs::JS_UNDEFINED,
        };
        define(ctx, o, atoms.query, query);
        define(ctx, o, atoms.headers, pairs(ctx, atoms, req.headers()));
        define(ctx, o, atoms.cookies, pairs(ctx, atoms, req.cookies()));
        let push = if req.push_enabled() {
            qjs::JS_TRUE
        } else {
            qjs::JS_FALSE
        };
        define(ctx, o, atoms.push_enabled, push);
        define(ctx, o, atoms.variant_name, string(ctx, req.variant()));
        o
    }
}

fn type_name(v: &Owned) -> &'static str {
    match v.tag() {
        qjs::JS_TAG_UNDEFINED => "undefined",
        qjs::JS_TAG_NULL => "null",
        qjs::JS_TAG_BOOL => "a boolean",
        qjs::JS_TAG_INT | qjs::JS_TAG_FLOAT64 => "a number",
        qjs::JS_TAG_STRING | qjs::JS_TAG_STRING_ROPE => "a string",
        qjs::JS_TAG_OBJECT if unsafe { qjs::JS_IsArray(v.v) } => "an array",
        qjs::JS_TAG_OBJECT => "an object",
        qjs::JS_TAG_EXCEPTION => "an exception (a getter threw)",
        _ => "another type",
    }
}

unsafe fn get(ctx: *mut JSContext, obj: JSValue, atom: JSAtom) -> Owned {
    unsafe { Owned::new(ctx, qjs::JS_GetProperty(ctx, obj, atom)) }
}

fn text(v: &Owned, what: &str) -> Result<String, String> {
    if !matches!(v.tag(), qjs::JS_TAG_STRING | qjs::JS_TAG_STRING_ROPE) {
        return Err(format!("{what}: expected a string, got {}", type_name(v)));
    }
    unsafe {
        let mut len = 0;
        let p = qjs::JS_ToCStringLen2(v.ctx, &mut len, v.v, false);
        if p.is_null() {
            return Err(format!("{what}: out of memory"));
        }
        let bytes = std::slice::from_raw_parts(p.cast::<u8>(), len as usize);
        let s = String::from_utf8_lossy(bytes).into_owned();
        qjs::JS_FreeCString(v.ctx, p);
        Ok(s)
    }
}

fn integer(v: &Owned, what: &str, max: f64) -> Result<f64, String> {
    let n = match v.tag() {
        qjs::JS_TAG_INT => f64::from(unsafe { qjs::JS_VALUE_GET_INT(v.v) }),
        qjs::JS_TAG_FLOAT64 => unsafe { qjs::JS_VALUE_GET_FLOAT64(v.v) },
        _ => return Err(format!("{what}: expected an integer, got {}", type_name(v))),
    };
    if n.fract() == 0.0 && (0.0..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{what}: {n} is not an integer in 0..={max}"))
    }
}

/// The most elements an array may have here: Herald takes at most 10,000
/// hints (`policy.max_hints`), and a longer (or sparse) array is an error,
/// not a million reads.
const MAX_ELEMENTS: i64 = 10_000;

/// `f` of each element of an array, in order, stopping at the first error.
fn each<T>(
    v: &Owned,
    what: &str,
    mut f: impl FnMut(Owned) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    if v.tag() != qjs::JS_TAG_OBJECT || !unsafe { qjs::JS_IsArray(v.v) } {
        return Err(format!("{what}: expected an array, got {}", type_name(v)));
    }
    let mut len = 0i64;
    if unsafe { qjs::JS_GetLength(v.ctx, v.v, &mut len) } < 0 {
        return Err(format!("{what}: no length"));
    }
    if len > MAX_ELEMENTS {
        return Err(format!("{what}: {len} elements, more than {MAX_ELEMENTS}"));
    }
    (0..len as u32)
        // SAFETY: each element read is a new reference of `v`'s context.
        .map(|i| f(unsafe { Owned::new(v.ctx, qjs::JS_GetPropertyUint32(v.ctx, v.v, i)) }))
        .collect()
}

/// An `option`'s `none`: `undefined`, or `null` (componentize-js takes both).
fn absent(v: &Owned) -> bool {
    matches!(v.tag(), qjs::JS_TAG_UNDEFINED | qjs::JS_TAG_NULL)
}

fn hint(atoms: &Atoms, o: &Owned) -> Result<Hint, String> {
    if o.tag() != qjs::JS_TAG_OBJECT {
        return Err(format!("a hint must be an object, got {}", type_name(o)));
    }
    let ctx = o.ctx;
    let field = |atom| unsafe { get(ctx, o.v, atom) };
    let mut h = Hint::new(text(&field(atoms.path), "hint.path")?);
    h = h.urgency(integer(&field(atoms.urgency), "hint.urgency", 255.0)? as u8);
    let incremental = field(atoms.incremental);
    h = h.incremental(match incremental.tag() {
        qjs::JS_TAG_BOOL => unsafe { qjs::JS_VALUE_GET_BOOL(incremental.v) },
        _ => {
            return Err(format!(
                "hint.incremental: expected a boolean, got {}",
                type_name(&incremental)
            ));
        }
    });
    h = h.weight(integer(&field(atoms.weight), "hint.weight", 65535.0)? as u16);
    let dest = text(&field(atoms.destination), "hint.destination")?;
    h = h.destination_is(
        Destination::parse(&dest)
            .ok_or_else(|| format!("hint.destination: `{dest}` is not a destination"))?,
    );
    let cors = field(atoms.crossorigin);
    if !absent(&cors) {
        h = h.crossorigin(match text(&cors, "hint.crossorigin")?.as_str() {
            "anonymous" => CorsMode::Anonymous,
            "use-credentials" => CorsMode::UseCredentials,
            other => return Err(format!("hint.crossorigin: `{other}` is not a cors-mode")),
        });
    }
    let copy = field(atoms.copy_headers);
    if !absent(&copy) {
        let names = each(&copy, "hint.copyHeaders", |n| {
            text(&n, "hint.copyHeaders[]")
        })?;
        h = h.copy_headers(names);
    }
    let headers = each(&field(atoms.headers), "hint.headers", |pair| {
        if pair.tag() != qjs::JS_TAG_OBJECT {
            return Err(format!(
                "hint.headers[]: expected an object, got {}",
                type_name(&pair)
            ));
        }
        let name = text(&unsafe { get(ctx, pair.v, atoms.name) }, "header.name")?;
        let value = text(&unsafe { get(ctx, pair.v, atoms.value) }, "header.value")?;
        Ok((name, value))
    })?;
    for (name, value) in headers {
        h = h.header(name, value);
    }
    h = h.delivery_is(
        match text(&field(atoms.delivery), "hint.delivery")?.as_str() {
            "auto" => Delivery::Auto,
            "push-only" => Delivery::PushOnly,
            "hint-only" => Delivery::HintOnly,
            other => return Err(format!("hint.delivery: `{other}` is not a delivery")),
        },
    );
    Ok(h)
}

/// What `decide` returned, as the policy's decision.
pub(crate) fn hints(atoms: &Atoms, out: &Owned) -> Decision {
    each(out, "decide's result", |h| hint(atoms, &h))
}
