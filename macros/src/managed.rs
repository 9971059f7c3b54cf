//! `#[managed]`: parse an inherent `impl` block, validate its `pub fn`s, and emit a
//! proxy type whose methods mirror them, the `Managed` implementation (a method table)
//! and the registration the manager's server needs.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, ReturnType, Type, Visibility};

use crate::attr::{Options, item_keyword, with_errors};

/// One method of the proxy.
struct Method<'a> {
    item: &'a ImplItemFn,
    args: Vec<&'a Type>,
}

pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: ItemImpl = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let message = "#[managed] goes on an `impl` block of the type to serve";
            let error = match syn::parse2::<syn::Item>(input.clone()) {
                Ok(item) => syn::Error::new_spanned(item_keyword(&item), message),
                Err(_) => syn::Error::new(Span::call_site(), message),
            };
            return with_errors(input, error);
        }
    };
    match Options::parse(args).and_then(|options| {
        let (ident, methods) = validate(&item)?;
        Ok(emit(&item, &options, ident, &methods))
    }) {
        Ok(tokens) => tokens,
        Err(error) => with_errors(input, error),
    }
}

fn validate(item: &ItemImpl) -> syn::Result<(&syn::Ident, Vec<Method<'_>>)> {
    let mut errors: Vec<syn::Error> = Vec::new();
    let mut error = |tokens: &dyn quote::ToTokens, message: &str| {
        errors.push(syn::Error::new_spanned(tokens, message));
    };
    if let Some((path, _)) = &item.trait_ {
        error(
            path,
            "#[managed] goes on an inherent `impl Type { .. }` block, not on a trait's impl",
        );
    }
    if !item.generics.params.is_empty() {
        error(
            &item.generics,
            "a #[managed] type cannot be generic: the server must know it by one name",
        );
    }
    let ident = match &*item.self_ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| &s.ident),
        _ => None,
    };
    if ident.is_none() {
        error(
            &item.self_ty,
            "#[managed] needs a named type (`impl Counter { .. }`)",
        );
    }
    if let (Type::Path(p), true) = (&*item.self_ty, item.generics.params.is_empty()) {
        if let Some(last) = p.path.segments.last() {
            if !last.arguments.is_empty() {
                error(
                    &last.arguments,
                    "a #[managed] type cannot be generic: the server must know it by one name",
                );
            }
        }
    }
    let mut methods = Vec::new();
    for impl_item in &item.items {
        let ImplItem::Fn(f) = impl_item else { continue };
        if !matches!(f.vis, Visibility::Public(_)) {
            continue;
        }
        let sig = &f.sig;
        let Some(FnArg::Receiver(receiver)) = sig.inputs.first() else {
            // An associated function (a constructor): not a method of the proxy.
            continue;
        };
        if !matches!(receiver.kind, syn::ReceiverKind::Reference(..)) {
            error(
                receiver,
                "a #[managed] method takes `&self` or `&mut self`: the object stays on the \
                 server",
            );
        }
        if let Some(asyncness) = &sig.asyncness {
            error(
                asyncness,
                "a #[managed] method cannot be `async`; make it a plain method",
            );
        }
        if !sig.generics.params.is_empty() {
            error(
                &sig.generics,
                "a #[managed] method cannot be generic: its proxy needs one signature",
            );
        }
        let mut args = Vec::new();
        for input in sig.inputs.iter().skip(1) {
            let FnArg::Typed(pat) = input else { continue };
            match &*pat.ty {
                Type::Reference(r) => error(
                    r,
                    "arguments of a #[managed] method cross to the server, so they must be \
                     owned: take `String` for `&str`, `Vec<T>` for `&[T]`",
                ),
                Type::ImplTrait(t) => error(
                    t,
                    "arguments of a #[managed] method need a concrete type that can be \
                     encoded, not `impl Trait`",
                ),
                _ => {}
            }
            args.push(&*pat.ty);
        }
        if let ReturnType::Type(_, ty) = &sig.output {
            if let Type::Reference(r) = &**ty {
                error(
                    r,
                    "a #[managed] method's result crosses back to the client, so it must be \
                     owned: return a clone",
                );
            }
        }
        methods.push(Method { item: f, args });
    }
    if methods.is_empty() && errors.is_empty() {
        errors.push(syn::Error::new_spanned(
            item.impl_token,
            "a #[managed] impl block needs at least one `pub fn` taking `&self` or `&mut self`: \
             those are the proxy's methods",
        ));
    }
    let mut errors = errors.into_iter();
    if let Some(mut first) = errors.next() {
        for e in errors {
            first.combine(e);
        }
        return Err(first);
    }
    Ok((ident.expect("checked above"), methods))
}

fn emit(
    item: &ItemImpl,
    options: &Options,
    ident: &syn::Ident,
    methods: &[Method<'_>],
) -> TokenStream {
    let krate = &options.krate;
    let private = quote!(#krate::__private);
    let self_ty = &item.self_ty;
    let proxy = format_ident!("{}Proxy", ident);
    let key = options.key(ident);
    let proxy_doc = format!(
        "A proxy of a [`{ident}`] served by a manager: each method runs on the server \
         (generated by `#[multiproc::managed]`)."
    );

    let mut proxy_methods = Vec::new();
    let mut arms = Vec::new();
    let mut checks = Vec::new();
    for (index, method) in methods.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let name = &method.item.sig.ident;
        let docs = method
            .item
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"));
        let names: Vec<_> = (0..method.args.len())
            .map(|i| format_ident!("__arg{}", i))
            .collect();
        let tys = &method.args;
        let output = match &method.item.sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => quote!(#ty),
        };
        proxy_methods.push(quote! {
            #(#docs)*
            pub fn #name(&self, #(#names: #tys),*) -> #krate::Result<#output> {
                self.0.call_method::<_, #output>(#index, &(#(#names,)*))
            }
        });
        arms.push(quote! {
            #index => {
                let (#(#names,)*): (#(#tys,)*) = #private::decode_args(args)?;
                #private::encode_result(&<#self_ty>::#name(self, #(#names),*))
            }
        });
        for ty in tys.iter() {
            checks.push(quote_spanned! {ty.span()=>
                const _: () = #private::assert_portable::<#ty>();
            });
        }
        if let ReturnType::Type(_, ty) = &method.item.sig.output {
            checks.push(quote_spanned! {ty.span()=>
                const _: () = #private::assert_portable::<#ty>();
            });
        }
    }

    quote! {
        #item

        #[doc = #proxy_doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        pub struct #proxy(#private::ProxyCore);

        impl #proxy {
            #(#proxy_methods)*
        }

        impl #private::serde::Serialize for #proxy {
            fn serialize<__S: #private::serde::Serializer>(
                &self,
                serializer: __S,
            ) -> #private::Result<__S::Ok, __S::Error> {
                #private::serde::Serialize::serialize(&self.0, serializer)
            }
        }

        impl<'de> #private::serde::Deserialize<'de> for #proxy {
            fn deserialize<__D: #private::serde::Deserializer<'de>>(
                deserializer: __D,
            ) -> #private::Result<Self, __D::Error> {
                #private::ProxyCore::deserialize_managed(
                    deserializer,
                    <#self_ty as #private::Managed>::KEY,
                )
                .map(#proxy)
            }
        }

        const _: () = {
            #(#checks)*

            impl #private::Managed for #self_ty {
                const KEY: &'static str = #key;
                type Proxy = #proxy;

                fn wrap(core: #private::ProxyCore) -> #proxy {
                    #proxy(core)
                }

                fn dispatch(
                    &mut self,
                    method: u32,
                    args: &[u8],
                ) -> #private::Result<::std::vec::Vec<u8>, #private::ManagerError> {
                    match method {
                        #(#arms)*
                        _ => #private::Result::Err(#private::unknown_method(
                            <Self as #private::Managed>::KEY,
                            method,
                        )),
                    }
                }
            }

            #private::inventory::submit! {
                #private::ManagedEntry::new::<#self_ty>()
            }
        };
    }
}
