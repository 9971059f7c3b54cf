//! `#[worker]`: parse the function, validate its signature, expand the glue.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::attr::{Options, item_keyword, with_errors};

/// What `#[worker]` needs to know about a valid function.
struct Worker<'a> {
    item: &'a ItemFn,
    options: Options,
    args: Vec<Arg<'a>>,
    output: Output<'a>,
}

struct Arg<'a> {
    /// The name used in the generated `spawn`/`process` signatures.
    name: Ident,
    ty: &'a Type,
}

enum Output<'a> {
    /// No return type, or `()`.
    Unit,
    /// Any other type. Whether it is a `Result`, whose `Err` ends the child with exit
    /// code 1, is decided by the type in the generated code, not by its spelling here:
    /// an alias such as `type Fallible<T> = Result<T, String>` is one too.
    Typed(&'a Type),
}

pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let message = "#[worker] goes on a function; for a struct, use #[process]";
            // Point at the item's keyword (`struct`, `enum`, ..) where there is one.
            let error = match syn::parse2::<syn::Item>(input.clone()) {
                Ok(item) => syn::Error::new_spanned(item_keyword(&item), message),
                Err(_) => syn::Error::new(Span::call_site(), message),
            };
            return with_errors(input, error);
        }
    };
    match Options::parse(args).and_then(|options| validate(&item, options)) {
        Ok(worker) => emit(&worker),
        Err(error) => with_errors(input, error),
    }
}

fn validate(item: &ItemFn, options: Options) -> syn::Result<Worker<'_>> {
    let sig = &item.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    let mut error = |tokens: &dyn quote::ToTokens, message: &str| {
        errors.push(syn::Error::new_spanned(tokens, message));
    };

    if let Some(asyncness) = &sig.asyncness {
        error(
            asyncness,
            "a #[worker] function cannot be `async`: it is the whole body of its own \
             process; make it a plain function and block on the future inside it",
        );
    }
    if let syn::Safety::Unsafe(unsafety) = &sig.safety {
        error(
            unsafety,
            "a #[worker] function cannot be `unsafe`: the child calls it with whatever \
             arguments it receives; make it safe and use `unsafe` blocks inside",
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        error(
            &sig.generics,
            "a #[worker] function cannot be generic: the child must know the concrete \
             argument types to decode them; write a worker for each concrete type",
        );
    }
    if let Some(variadic) = &sig.variadic {
        error(variadic, "a #[worker] function cannot be variadic");
    }

    let mut args = Vec::new();
    for (index, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(receiver) => error(
                receiver,
                "a #[worker] cannot take `self`: a worker is a free function; to give a \
                 process state, put #[process] on a struct and implement `Run` for it",
            ),
            FnArg::Typed(pat_type) => {
                if let Some((tokens, message)) = borrowed(&pat_type.ty, "argument") {
                    error(&tokens, &message);
                }
                let name = match &*pat_type.pat {
                    // The caller-facing name, without `mut` or `ref` (and still raw,
                    // as in `r#type`, since a bare keyword is no name).
                    Pat::Ident(pat) if pat.subpat.is_none() => pat.ident.clone(),
                    // A pattern has no name: invent one that no user argument can
                    // clash with (mixed-site hygiene), even one called `arg0`.
                    _ => format_ident!("arg{index}", span = Span::mixed_site()),
                };
                args.push(Arg {
                    name,
                    ty: &pat_type.ty,
                });
            }
        }
    }

    let output = match &sig.output {
        ReturnType::Default => Output::Unit,
        ReturnType::Type(_, ty) => {
            if let Some((tokens, message)) = borrowed(ty, "return value") {
                error(&tokens, &message);
            }
            match &**ty {
                Type::Tuple(tuple) if tuple.elems.is_empty() => Output::Unit,
                Type::Never(never) => {
                    error(
                        never,
                        "a #[worker] function cannot return `!`; return `()` and end the \
                         process with `multiproc::exit(code)` where needed",
                    );
                    Output::Unit
                }
                _ => Output::Typed(ty),
            }
        }
    };

    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(Worker {
            item,
            options,
            args,
            output,
        }),
        Some(mut first) => {
            first.extend(errors);
            Err(first)
        }
    }
}

/// Why `ty` cannot cross the process boundary by its syntax alone: it borrows, or it
/// is an `impl Trait`. The tokens to point at and the message.
fn borrowed(ty: &Type, what: &str) -> Option<(TokenStream, String)> {
    struct Finder<'a> {
        found: Option<(TokenStream, String)>,
        what: &'a str,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            if self.found.is_some() {
                return;
            }
            let owned = match &*r.elem {
                Type::Path(p) if p.path.is_ident("str") => "`String`".to_owned(),
                Type::Path(p) if p.path.is_ident("Path") => "`PathBuf`".to_owned(),
                Type::Slice(s) => {
                    let elem = &s.elem;
                    format!("`Vec<{}>`", quote!(#elem).to_string().replace(' ', ""))
                }
                elem => format!("`{}`", quote!(#elem).to_string().replace(' ', "")),
            };
            let what = self.what;
            self.found = Some((
                quote!(#r),
                format!(
                    "a #[worker] {what} must be owned, not borrowed: it is copied to or \
                     from another process; use {owned} instead"
                ),
            ));
        }
        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            if self.found.is_none() {
                let what = self.what;
                self.found = Some((
                    quote!(#lifetime),
                    format!(
                        "a #[worker] {what} cannot borrow (it is copied to or from \
                         another process); use an owned type without a lifetime"
                    ),
                ));
            }
        }
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            if self.found.is_none() {
                let what = self.what;
                self.found = Some((
                    quote!(#t),
                    format!(
                        "a #[worker] {what} cannot be `impl Trait`: the child must know \
                         the concrete type to decode it; name the type"
                    ),
                ));
            }
        }
    }
    let mut finder = Finder { found: None, what };
    finder.visit_type(ty);
    finder.found
}

fn emit(worker: &Worker<'_>) -> TokenStream {
    let item = worker.item;
    let krate = &worker.options.krate;
    let private = quote!(#krate::__private);
    let vis = &item.vis;
    let ident = &item.sig.ident;
    let key = worker.options.key(ident);

    let names: Vec<&Ident> = worker.args.iter().map(|a| &a.name).collect();
    let types: Vec<&Type> = worker.args.iter().map(|a| a.ty).collect();
    let params = quote!(#(#names: #types),*);
    let args_tuple = quote!((#(#names,)*));

    // Each argument's type is checked at the type, so that a type that cannot cross
    // gets one error, there; a type used twice is checked once. Everything else that
    // needs the arguments to cross sees them through a `Gate` that opens only when
    // they do, so that it adds no error of its own.
    let mut seen = std::collections::HashSet::new();
    let mut checks: Vec<TokenStream> = types
        .iter()
        .filter(|ty| seen.insert(ty.to_token_stream().to_string()))
        .map(|ty| quote_spanned!(ty.span()=> #private::assert_portable::<#ty>();))
        .collect();
    let args_gate = quote! {
        <#private::Gate<{ #private::Probe::<__MultiprocArgs>::MULTIPROC_PORTABLE }>
            as #private::Crossing<__MultiprocArgs>>
    };

    // The call reads the tuple by index, so that no argument name can shadow the
    // function's own name.
    let fields = (0..names.len()).map(syn::Index::from);
    let invoke = quote!(#ident(#(__multiproc_args.#fields),*));
    let (aliases, output_ty, call) = match &worker.output {
        Output::Unit => (
            quote!(),
            quote!(()),
            quote!(::core::result::Result::Ok(#invoke)),
        ),
        Output::Typed(ty) => {
            // Whether `ty` is a `Result` is asked of the type, so that an alias counts;
            // the value sent back is `T` for `Result<T, E>` and `ty` otherwise.
            // The value's check runs from the first token of the type to its last, so
            // that its error covers the user's return type.
            let mut spans = ty.to_token_stream().into_iter().map(|t| t.span());
            let first = spans.next().unwrap_or_else(Span::call_site);
            let last = spans.last().unwrap_or(first);
            let open = quote_spanned!(first=> <);
            let value = quote_spanned!(last=> Value);
            checks.push(quote! {
                #private::assert_portable::<#open #ty as #private::Outcome<__MultiprocReturns>>::#value>();
            });
            let output_gate = quote! {
                <#private::Gate<{ #private::Probe::<__MultiprocValue>::MULTIPROC_PORTABLE }>
                    as #private::Crossing<__MultiprocValue>>
            };
            (
                quote! {
                    type __MultiprocReturns =
                        #private::Returns<{ #private::Probe::<#ty>::MULTIPROC_RESULT }>;
                    type __MultiprocValue =
                        <#ty as #private::Outcome<__MultiprocReturns>>::Value;
                },
                quote!(#output_gate::Type),
                quote! {
                    #private::into_value::<#ty, __MultiprocReturns>(#invoke)
                        .map(#output_gate::enter)
                },
            )
        }
    };

    let spawn_doc =
        format!("Starts [`{ident}`]({ident}()) in a new process; returns the started process.");
    let process_doc = format!(
        "An unstarted process that will run [`{ident}`]({ident}()): set its name or \
         daemon flag, then call `start`."
    );
    let struct_doc = format!(
        "Runs [`{ident}`]({ident}()) in its own process: see [`{ident}::spawn`] and \
         [`{ident}::process`]. Generated by `#[multiproc::worker]`."
    );

    quote! {
        #item

        #[doc = #struct_doc]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}

        const _: () = {
            // The `false` answers of `Probe`; unused when every answer is `true`.
            #[allow(unused_imports)]
            use #private::Otherwise as _;

            type __MultiprocArgs = (#(#types,)*);
            #aliases

            #(#checks)*

            impl #ident {
                #[doc = #spawn_doc]
                #[allow(clippy::too_many_arguments, dead_code)]
                pub fn spawn(#params) -> #private::SpawnResult<<#ident as #private::Worker>::Output> {
                    #private::spawn(Self::process(#(#names),*))
                }

                #[doc = #process_doc]
                #[allow(clippy::too_many_arguments, dead_code)]
                pub fn process(#params) -> #private::Process<<#ident as #private::Worker>::Output> {
                    #private::Process::from_worker::<#ident>(#args_gate::enter(#args_tuple))
                }
            }

            impl #private::Worker for #ident {
                type Args = #args_gate::Type;
                type Output = #output_ty;
                const KEY: &'static str = #key;

                #[allow(clippy::unused_unit)]
                fn call(__multiproc_args: Self::Args) -> #private::Result<Self::Output, #private::Failure> {
                    let __multiproc_args = #args_gate::leave(__multiproc_args);
                    #call
                }
            }

            #private::inventory::submit! {
                #private::Entry::new::<#ident>(::core::file!(), ::core::line!())
            }
        };
    }
}
