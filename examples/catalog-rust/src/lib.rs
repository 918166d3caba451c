//! A product catalog served over GraphQL: queries read products from the
//! plugin's key-value store, mutations change them, and `setPrice`
//! publishes every new price to the `prices` topic, which feeds the
//! `priceChanged` subscription on every engine.

use kiln_sdk::graphql::{Graphql, Resolve};
use kiln_sdk::{Error, Plugin, Result, kv, pubsub};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const SDL: &str = r#"
"An instant, as RFC 3339 text in UTC"
scalar DateTime @specifiedBy(url: "https://www.rfc-editor.org/rfc/rfc3339")

enum Currency { EUR USD GBP }

type Price {
  sku: String!
  amount: Float!
  currency: Currency!
  changedAt: DateTime!
}

type Product {
  sku: String!
  name: String!
  tags: [String!]!
  price: Price
}

input ProductInput {
  sku: String!
  name: String!
  tags: [String!] = []
}

extend type Query {
  "One product by its SKU, or null"
  product(sku: String!): Product
  "Every product, optionally only those with a tag"
  products(tag: String): [Product!]!
}

extend type Mutation {
  "Adds a product, or replaces the one with the same SKU (keeping its price)"
  addProduct(input: ProductInput!): Product!
  "Sets a product's price and tells every priceChanged subscriber"
  setPrice(sku: String!, amount: Float!, currency: Currency = EUR): Price! @price(micros: 100)
  "Removes a product; true if it existed"
  deleteProduct(sku: String!): Boolean! @auth(roles: ["editor"])
}

extend type Subscription {
  "Every price change, or only those of one SKU"
  priceChanged(sku: String): Price @topic(name: "prices")
}
"#;

/// The topic `setPrice` publishes to and `priceChanged` follows.
const PRICES: &str = "prices";

#[derive(Serialize, Deserialize)]
struct Product {
    sku: String,
    name: String,
    tags: Vec<String>,
    price: Option<Price>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Price {
    sku: String,
    amount: f64,
    currency: String,
    changed_at: String,
}

#[derive(Deserialize)]
struct ProductInput {
    sku: String,
    name: String,
    #[serde(default)]
    tags: Vec<String>,
}

struct Catalog;

impl Plugin for Catalog {
    fn graphql() -> Graphql {
        Graphql::new(SDL)
            .query("product", product)
            .query("products", products)
            .mutation("addProduct", add_product)
            .mutation("setPrice", set_price)
            .mutation("deleteProduct", delete_product)
    }
}

fn key(sku: &str) -> String {
    format!("product:{sku}")
}

fn load(sku: &str) -> Result<Option<Product>> {
    kv::get_json(&key(sku))
}

fn product(r: Resolve) -> Result<Value> {
    let sku: String = r.arg("sku")?;
    Ok(serde_json::to_value(load(&sku)?)?)
}

fn products(r: Resolve) -> Result<Value> {
    let tag: Option<String> = r.arg_opt("tag")?;
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let keys = kv::list_keys("product:", after.as_deref(), 1000)?;
        for k in &keys {
            if let Some(p) = kv::get_json::<Product>(k)?
                && tag.as_ref().is_none_or(|t| p.tags.contains(t))
            {
                out.push(p);
            }
        }
        if keys.len() < 1000 {
            break;
        }
        after = keys.last().cloned();
    }
    Ok(serde_json::to_value(out)?)
}

fn add_product(r: Resolve) -> Result<Value> {
    let input: ProductInput = r.arg("input")?;
    if input.sku.is_empty() || input.sku.len() > 64 {
        return Err(Error::bad_request("sku must be 1-64 characters"));
    }
    let price = load(&input.sku)?.and_then(|p| p.price);
    let product = Product {
        sku: input.sku,
        name: input.name,
        tags: input.tags,
        price,
    };
    kv::set_json(&key(&product.sku), &product, None)?;
    Ok(serde_json::to_value(product)?)
}

fn set_price(r: Resolve) -> Result<Value> {
    let sku: String = r.arg("sku")?;
    let amount: f64 = r.arg("amount")?;
    let currency: String = r.arg("currency")?;
    if !amount.is_finite() || amount < 0.0 {
        return Err(Error::bad_request("amount must be a number of at least 0"));
    }
    let Some(mut product) = load(&sku)? else {
        return Err(Error::not_found(format!("no product with sku '{sku}'")));
    };
    let price = Price {
        sku: sku.clone(),
        amount,
        currency,
        changed_at: now_rfc3339(),
    };
    product.price = Some(price.clone());
    kv::set_json(&key(&sku), &product, None)?;
    pubsub::publish(PRICES, &price)?;
    Ok(json!(price))
}

fn delete_product(r: Resolve) -> Result<Value> {
    let sku: String = r.arg("sku")?;
    Ok(Value::Bool(kv::delete(&key(&sku))?))
}

/// The wall clock as RFC 3339 in UTC, without a date library.
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

kiln_sdk::export_plugin!(Catalog);
