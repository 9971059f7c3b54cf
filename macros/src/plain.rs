//! `#[derive(Plain)]`: parse the struct, validate it, emit the unsafe impl with the
//! compile-time checks that make it sound.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, DeriveInput, Member, Path};

use crate::attr::{crate_path, default_crate};

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let item: DeriveInput = match syn::parse2(input) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error(),
    };
    let krate = crate_option(&item.attrs);
    let fields = validate(&item);
    match (krate, fields) {
        (Ok(krate), Ok(fields)) => emit(&item, &krate, &fields),
        (Err(mut a), Err(b)) => {
            a.combine(b);
            a.to_compile_error()
        }
        (Err(e), _) | (_, Err(e)) => e.to_compile_error(),
    }
}

/// The path of the multiproc crate: `#[plain(crate = "path")]`, or `::multiproc`.
fn crate_option(attrs: &[Attribute]) -> syn::Result<Path> {
    let mut krate = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("plain")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                krate = Some(crate_path(&meta)?);
                Ok(())
            } else {
                Err(meta.error("unknown option; expected `crate = \"...\"`"))
            }
        })?;
    }
    Ok(krate.unwrap_or_else(default_crate))
}

/// The fields: how to name each, and its type.
fn validate(item: &DeriveInput) -> syn::Result<Vec<(Member, syn::Type)>> {
    let mut errors: Vec<syn::Error> = Vec::new();
    let data = match &item.data {
        syn::Data::Struct(data) => Some(data),
        syn::Data::Enum(e) => {
            errors.push(syn::Error::new_spanned(
                e.enum_token,
                "Plain cannot be derived for an enum: not every bit pattern is one of its \
                 variants; store its discriminant as an integer instead",
            ));
            None
        }
        syn::Data::Union(u) => {
            errors.push(syn::Error::new_spanned(
                u.union_token,
                "Plain cannot be derived for a union; implement it by hand (unsafe) if \
                 every field is plain",
            ));
            None
        }
    };
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &item.generics,
            "Plain cannot be derived for a generic struct: the check for padding needs \
             the concrete field types",
        ));
    }
    if data.is_some() && !has_c_layout(&item.attrs) {
        errors.push(syn::Error::new_spanned(
            &item.ident,
            "a Plain struct needs #[repr(C)] (or #[repr(transparent)]), so that its \
             layout is fixed",
        ));
    }
    let mut errors = errors.into_iter();
    if let Some(mut first) = errors.next() {
        first.extend(errors);
        return Err(first);
    }
    let fields = data
        .map(|d| {
            d.fields
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let member = match &f.ident {
                        Some(ident) => Member::Named(ident.clone()),
                        None => Member::Unnamed(syn::Index {
                            index: i as u32,
                            span: f.ty.span(),
                        }),
                    };
                    (member, f.ty.clone())
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(fields)
}

/// Whether the attributes include `#[repr(C)]` or `#[repr(transparent)]`.
fn has_c_layout(attrs: &[Attribute]) -> bool {
    attrs.iter().filter(|a| a.path().is_ident("repr")).any(|a| {
        let mut found = false;
        let _ = a.parse_nested_meta(|meta| {
            if meta.path.is_ident("C") || meta.path.is_ident("transparent") {
                found = true;
            }
            // Skip the arguments of `align(N)` and `packed(N)`.
            if meta.input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in meta.input);
                let _: TokenStream = content.parse()?;
            }
            Ok(())
        });
        found
    })
}

fn emit(item: &DeriveInput, krate: &Path, fields: &[(Member, syn::Type)]) -> TokenStream {
    let private = quote!(#krate::__private);
    let ident = &item.ident;
    let types: Vec<_> = fields.iter().map(|(_, t)| t).collect();
    // Each field's normalization requires `Plain` of the field's type and sits at it, so
    // that a field that is not plain gets one error, there.
    let normalize = fields.iter().map(|(member, ty)| {
        quote_spanned! {ty.span()=>
            // SAFETY: the caller gives the bytes of a whole `Self`; the field's address
            // is taken without a reference (it may be unaligned).
            unsafe {
                #private::normalize_field::<#ty>(::core::ptr::addr_of_mut!((*value).#member));
            }
        }
    });
    let message = format!(
        "`{ident}` has padding between or after its fields, which is not plain data: \
         reorder the fields (largest first) or add explicit padding fields"
    );
    let sum = if types.is_empty() {
        quote!(0)
    } else {
        quote!(#(::core::mem::size_of::<#types>())+*)
    };
    let padding_check = quote_spanned! {ident.span()=>
        const _: () = ::core::assert!(::core::mem::size_of::<#ident>() == #sum, #message);
    };
    quote! {
        const _: () = {
            #padding_check

            // SAFETY: the struct is `repr(C)` (checked by the derive), every field is
            // `Plain` (`normalize_field` requires it), and the fields fill it without
            // padding (checked above): it is valid for every bit pattern once each field
            // is normalized.
            #[allow(unsafe_code)]
            unsafe impl #private::Plain for #ident {
                const VALID_FOR_ANY_BITS: bool = {
                    #[allow(unused_imports)]
                    use #private::AnyBitsFallback as _;
                    true #(&& <#private::AnyBitsProbe<#types>>::VALID_FOR_ANY_BITS)*
                };

                unsafe fn normalize(value: *mut Self) {
                    #(#normalize)*
                    let _ = value;
                }
            }
        };
    }
}
