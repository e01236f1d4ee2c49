//! Runs the embedded example on 127.0.0.1:3001 (or `PORT`).

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().init();
    let shop = embedded_example::Shop::new();
    let app = embedded_example::app(&shop);
    let port = std::env::var("PORT").unwrap_or_else(|_| "3001".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("embedded example on http://{}", listener.local_addr()?);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    switchboard::serve(listener, app, shop.node, shutdown).await
}
