//! `#[process]`: parse the struct, validate it, derive serde, expand the glue.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Item, ItemStruct};

use crate::attr::{Options, item_keyword, with_errors};

pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => return with_errors(input, e),
    };
    let result = Options::parse(args).and_then(|options| match &item {
        Item::Struct(item) => validate(item).map(|()| emit(item, &options)),
        other => Err(syn::Error::new_spanned(
            item_keyword(other),
            "#[process] goes on a struct with named fields, which hold the process's \
             state; for a function, use #[worker]",
        )),
    });
    match result {
        Ok(tokens) => tokens,
        Err(error) => with_errors(input, error),
    }
}

fn validate(item: &ItemStruct) -> syn::Result<()> {
    let mut errors = Vec::new();
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &item.generics,
            "a #[process] struct cannot be generic: the child must know the concrete \
             field types to decode them",
        ));
    }
    match &item.fields {
        Fields::Named(_) => {}
        Fields::Unnamed(fields) => errors.push(syn::Error::new_spanned(
            fields,
            "a #[process] struct needs named fields; write `struct Name { field: Type }`",
        )),
        Fields::Unit => errors.push(syn::Error::new_spanned(
            &item.ident,
            "a #[process] struct needs named fields; write `struct Name {}` for a \
             process without state",
        )),
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(mut first) => {
            first.extend(errors);
            Err(first)
        }
    }
}

/// Whether the struct already derives `trait_name` (by the last path segment).
fn derives(attrs: &[Attribute], trait_name: &str) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .any(|a| {
            let mut found = false;
            let _ = a.parse_nested_meta(|meta| {
                if meta
                    .path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == trait_name)
                {
                    found = true;
                }
                Ok(())
            });
            found
        })
}

/// Whether the attributes include a `#[serde(..)]` with the option `name`.
fn serde_option(attrs: &[Attribute], name: &str) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("serde"))
        .any(|a| {
            let mut found = false;
            let _ = a.parse_nested_meta(|meta| {
                found |= meta.path.is_ident(name);
                // Skip the option's value: `= ".."` or `(..)`.
                if meta.input.peek(syn::Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                } else if meta.input.peek(syn::token::Paren) {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let _: TokenStream = content.parse()?;
                }
                Ok(())
            });
            found
        })
}

fn emit(item: &ItemStruct, options: &Options) -> TokenStream {
    let krate = &options.krate;
    let private = quote!(#krate::__private);
    let ident = &item.ident;
    let key = options.key(ident);
    let kind = ident.to_string();

    let derive_serialize = !derives(&item.attrs, "Serialize");
    let derive_deserialize = !derives(&item.attrs, "Deserialize");
    let mut derive = Vec::new();
    if derive_serialize {
        derive.push(quote!(#private::serde::Serialize));
    }
    if derive_deserialize {
        derive.push(quote!(#private::serde::Deserialize));
    }

    // When the macro derives serde, each field that leaves serde to its type is checked
    // at its type, so that a field that cannot cross gets one error, there. The derived
    // impls then hold only where those fields can cross (a bound under `for<..>`, which
    // rustc accepts even when false), so that their bodies add no error of their own.
    // A field with its own `#[serde(..)]` is the user's to get right; so is a struct
    // that derives serde itself, checked whole at its name.
    let mut checks = Vec::new();
    let mut bound = quote!();
    if derive_serialize && derive_deserialize && !serde_option(&item.attrs, "bound") {
        let serde_path = quote!(#private::serde).to_string().replace(' ', "");
        let mut seen = std::collections::HashSet::new();
        let plain: Vec<&syn::Type> = item
            .fields
            .iter()
            .filter(|f| !f.attrs.iter().any(|a| a.path().is_ident("serde")))
            .map(|f| &f.ty)
            .filter(|ty| seen.insert(ty.to_token_stream().to_string()))
            .collect();
        for ty in &plain {
            checks.push(quote_spanned!(ty.span()=> #private::assert_portable::<#ty>();));
        }
        let predicates = |what: &str| {
            plain
                .iter()
                .map(|ty| {
                    let ty = ty.to_token_stream();
                    format!("for<'__multiproc> {ty}: {serde_path}::{what}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let serialize = predicates("Serialize");
        let deserialize = predicates("Deserialize<'de>");
        if !plain.is_empty() {
            bound = quote!(#[serde(bound(serialize = #serialize, deserialize = #deserialize))]);
        }
    } else {
        checks.push(quote_spanned!(ident.span()=> #private::assert_portable::<#ident>();));
    }

    let serde_attrs = if derive.is_empty() {
        quote!()
    } else {
        let serde_path = quote!(#private::serde).to_string().replace(' ', "");
        quote! {
            #[derive(#(#derive),*)]
            #[serde(crate = #serde_path)]
            #bound
        }
    };
    // The call that needs `Run` sits at the struct's name, so the error lands there.
    let run =
        quote_spanned!(ident.span()=> #private::run_struct::<#ident, _>(&mut __multiproc_self));
    let gate = quote! {
        <#private::Gate<{ #private::Probe::<#ident>::MULTIPROC_PORTABLE }>
            as #private::Crossing<#ident>>
    };
    let into_process_doc = format!(
        "An unstarted process that runs this [`{ident}`]'s `run`; its default name is \
         `{ident}-N`."
    );

    quote! {
        #serde_attrs
        #item

        const _: () = {
            // The `false` answer of `Probe`; unused when the struct can cross.
            #[allow(unused_imports)]
            use #private::Otherwise as _;

            #(#checks)*

            impl #ident {
                #[doc = #into_process_doc]
                #[allow(dead_code)]
                pub fn into_process(self) -> #private::Process {
                    #private::Process::from_worker::<#ident>(#gate::enter(self))
                }
            }

            impl #private::Worker for #ident {
                type Args = #gate::Type;
                type Output = ();
                const KEY: &'static str = #key;
                const KIND: &'static str = #kind;

                fn call(__multiproc_self: Self::Args) -> #private::Result<(), #private::Failure> {
                    let mut __multiproc_self = #gate::leave(__multiproc_self);
                    #run
                }
            }

            #private::inventory::submit! {
                #private::Entry::new::<#ident>(::core::file!(), ::core::line!())
            }
        };
    }
}
