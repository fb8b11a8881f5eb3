// A minimal Pingora HTTP reverse proxy: every request goes to one plain-HTTP upstream, the same job as
// the nginx, haproxy and AGW contenders in bench/run.ts. Built by bench/pingora/build.sh.
//
// usage: agw-bench-pingora --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT [--threads N] [--h2c]
//   --threads  worker threads of the proxy service (Pingora's `threads`; default 1)
//   --h2c      also accept HTTP/2 with prior knowledge on the listener (HTTP/1.1 upstream either way)

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::process::exit;

struct OneUpstream {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for OneUpstream {
    type CTX = ();
    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

struct Args {
    listen: String,
    upstream: SocketAddr,
    threads: usize,
    h2c: bool,
}

fn usage(problem: &str) -> ! {
    eprintln!("agw-bench-pingora: {problem}");
    eprintln!(
        "usage: agw-bench-pingora --listen ADDR:PORT --upstream ADDR:PORT [--threads N] [--h2c]"
    );
    exit(2);
}

fn parse_args() -> Args {
    let mut listen = None;
    let mut upstream = None;
    let mut threads = 1;
    let mut h2c = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--listen" => listen = Some(value()),
            "--upstream" => {
                let text = value();
                upstream = Some(
                    text.parse()
                        .unwrap_or_else(|_| usage(&format!("bad --upstream {text}"))),
                );
            }
            "--threads" => {
                let text = value();
                threads = match text.parse() {
                    Ok(n) if n >= 1 => n,
                    _ => usage(&format!("--threads must be an integer >= 1, got {text}")),
                };
            }
            "--h2c" => h2c = true,
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    Args {
        listen: listen.unwrap_or_else(|| usage("--listen is required")),
        upstream: upstream.unwrap_or_else(|| usage("--upstream is required")),
        threads,
        h2c,
    }
}

fn main() {
    let args = parse_args();
    let mut conf = ServerConf::new().expect("Pingora's default configuration");
    conf.threads = args.threads;
    // The other contenders keep up to 256 idle upstream connections; Pingora's default is 128.
    conf.upstream_keepalive_pool_size = 256;
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = http_proxy_service(
        &server.configuration,
        OneUpstream {
            upstream: args.upstream,
        },
    );
    if args.h2c {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        proxy.app_logic_mut().expect("the proxy app").server_options = Some(options);
    }
    proxy.add_tcp(&args.listen);
    server.add_service(proxy);
    server.run_forever();
}
