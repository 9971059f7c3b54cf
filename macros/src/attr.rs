//! The options the macros take: `name = "key"` and `crate = "path"` for the
//! attributes, `#[plain(crate = "path")]` for the derive.

use proc_macro2::TokenStream;
use quote::quote;
use syn::meta::ParseNestedMeta;
use syn::{Item, LitStr, Path};

/// Parsed `#[worker(..)]` / `#[process(..)]` options.
pub(crate) struct Options {
    /// The registry key, if overridden.
    pub(crate) name: Option<LitStr>,
    /// The path of the multiproc crate.
    pub(crate) krate: Path,
}

impl Options {
    pub(crate) fn parse(args: TokenStream) -> syn::Result<Options> {
        let mut name = None;
        let mut krate = None;
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new_spanned(
                        &lit,
                        "the worker name cannot be empty",
                    ));
                }
                name = Some(lit);
                Ok(())
            } else if meta.path.is_ident("crate") {
                krate = Some(crate_path(&meta)?);
                Ok(())
            } else {
                Err(meta.error("unknown option; expected `name = \"...\"` or `crate = \"...\"`"))
            }
        });
        syn::parse::Parser::parse2(parser, args)?;
        Ok(Options {
            name,
            krate: krate.unwrap_or_else(default_crate),
        })
    }

    /// The expression of the registry key for an item named `ident`.
    pub(crate) fn key(&self, ident: &syn::Ident) -> TokenStream {
        match &self.name {
            Some(name) => quote!(#name),
            None => {
                let ident = ident.to_string();
                quote!(::core::concat!(::core::module_path!(), "::", #ident))
            }
        }
    }
}

/// The value of a `crate = "path"` option (or `crate = path`).
pub(crate) fn crate_path(meta: &ParseNestedMeta<'_>) -> syn::Result<Path> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        value.parse::<LitStr>()?.parse::<Path>()
    } else {
        value.parse::<Path>()
    }
}

/// The path of the multiproc crate when no `crate = ".."` says otherwise.
pub(crate) fn default_crate() -> Path {
    syn::parse_quote!(::multiproc)
}

/// The item unchanged, with the errors beside it, so that one mistake does not
/// cascade into many.
pub(crate) fn with_errors(item: TokenStream, error: syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    quote!(#item #errors)
}

/// The tokens that name what kind of item this is (`enum`, `fn`, ...), to point at.
pub(crate) fn item_keyword(item: &Item) -> TokenStream {
    match item {
        Item::Struct(s) => {
            let t = &s.struct_token;
            quote!(#t)
        }
        Item::Enum(e) => {
            let t = &e.enum_token;
            quote!(#t)
        }
        Item::Fn(f) => {
            let t = &f.sig.fn_token;
            quote!(#t)
        }
        Item::Union(u) => {
            let t = &u.union_token;
            quote!(#t)
        }
        Item::Trait(t) => {
            let t = &t.trait_token;
            quote!(#t)
        }
        Item::Impl(i) => {
            let t = &i.impl_token;
            quote!(#t)
        }
        other => quote!(#other),
    }
}
