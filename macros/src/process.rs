//! `#[process]`: parse the struct, validate it, derive serde, expand the glue.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
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

fn emit(item: &ItemStruct, options: &Options) -> TokenStream {
    let krate = &options.krate;
    let private = quote!(#krate::__private);
    let ident = &item.ident;
    let key = options.key(ident);
    let kind = ident.to_string();

    let mut derive = Vec::new();
    if !derives(&item.attrs, "Serialize") {
        derive.push(quote!(#private::serde::Serialize));
    }
    if !derives(&item.attrs, "Deserialize") {
        derive.push(quote!(#private::serde::Deserialize));
    }
    let serde_attrs = if derive.is_empty() {
        quote!()
    } else {
        let serde_path = quote!(#private::serde).to_string().replace(' ', "");
        quote! {
            #[derive(#(#derive),*)]
            #[serde(crate = #serde_path)]
        }
    };
    // The call that needs `Run` sits at the struct's name, so the error lands there.
    let run =
        quote_spanned!(ident.span()=> #private::run_struct::<#ident, _>(&mut __multiproc_self));
    let into_process_doc = format!(
        "An unstarted process that runs this [`{ident}`]'s `run`; its default name is \
         `{ident}-N`."
    );

    quote! {
        #serde_attrs
        #item

        impl #ident {
            #[doc = #into_process_doc]
            #[allow(dead_code)]
            pub fn into_process(self) -> #private::Process {
                #private::Process::from_worker::<#ident>(self)
            }
        }

        const _: () = {
            impl #private::Worker for #ident {
                type Args = #ident;
                type Output = ();
                const KEY: &'static str = #key;
                const KIND: &'static str = #kind;

                fn call(mut __multiproc_self: Self::Args) -> #private::Result<(), #private::Failure> {
                    #run
                }
            }

            #private::inventory::submit! {
                #private::Entry::new::<#ident>(::core::file!(), ::core::line!())
            }
        };
    }
}
