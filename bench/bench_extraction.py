"""Benchmark: page price extraction, selectolax fast path vs extruct.

Generates a ~250 KB Brazilian product page (JSON-LD Product + a big body of related products,
scripts and styles) and a same-size fallback page without JSON-LD (OpenGraph + microdata), then
times, interleaved A B A B ... and quoting medians:

  A  smartbuy extract_page (selectolax/Lexbor on ld+json tags; meta/itemprop lookups on fallback)
  B  extruct json-ld only                 (JSON-LD page)
  C  extruct json-ld + microdata + opengraph (JSON-LD page)
  D  extruct opengraph + microdata        (fallback page; what extract_page would otherwise run)

Printed figures, not assertions: shared machines are noisy, ratios within one run are what
count (see /work/shared/context/performance-limits.md).

Run: .venv/bin/python bench/bench_extraction.py [rounds]
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

import extruct

from smartbuy_pipeline.domain.extraction import extract_page

RELATED = """
<div class="card" data-sku="{i}">
  <a href="/p/produto-{i}"><img src="/img/{i}.webp" alt="Produto relacionado {i}" loading="lazy"></a>
  <h3 class="card-title">Produto relacionado número {i} com nome comprido de vitrine</h3>
  <div class="card-price"><s>R$ {old},00</s> <strong>R$ {new},90</strong> no Pix</div>
  <div class="card-inst">ou 10x de R$ {inst},99 sem juros</div>
  <ul class="specs"><li>Voltagem: 127V</li><li>Garantia: 12 meses</li><li>Cor: Preto</li></ul>
</div>"""

SCRIPT = "<script>window.__STATE_{i}__ = {state};</script>\n"
STYLE = ".c{i}{{margin:{i}px;padding:{i}px;color:#{i:06x};font-family:Inter,Arial,sans-serif}}\n"


def _body(n_related: int) -> str:
    cards = "".join(
        RELATED.format(i=i, old=1000 + i, new=800 + i, inst=80 + i % 20) for i in range(n_related)
    )
    state = json.dumps({"items": [{"id": k, "name": f"item {k}", "tags": ["a", "b"]}
                                  for k in range(40)]})
    scripts = "".join(SCRIPT.format(i=i, state=state) for i in range(25))
    return cards, scripts


def make_pages(target_kb: int = 250) -> tuple[str, str]:
    styles = "<style>" + "".join(STYLE.format(i=i) for i in range(400)) + "</style>"
    jsonld = json.dumps({
        "@context": "https://schema.org", "@type": "Product", "name": "Geladeira Frost Free 400L",
        "gtin13": "7891234567895", "sku": "GEL-400",
        "offers": {"@type": "Offer", "price": "2099.00", "priceCurrency": "BRL",
                   "availability": "https://schema.org/InStock",
                   "priceSpecification": [{"@type": "UnitPriceSpecification",
                                           "priceType": "https://schema.org/StrikethroughPrice",
                                           "price": "2599.00", "priceCurrency": "BRL"}]}})
    breadcrumbs = json.dumps({"@context": "https://schema.org", "@type": "BreadcrumbList",
                              "itemListElement": [{"@type": "ListItem", "position": k,
                                                   "name": f"Nível {k}"} for k in range(1, 5)]})
    buybox = """<div class="buy-box">
      <span data-price-kind="reference">de R$ 2.599,00</span>
      <span data-price-kind="cash">R$ 1.899,00 no Pix</span>
      <span data-price-kind="card">R$ 2.099,00 no cartão</span>
      <span data-price-kind="installment" data-installments="10">10x de R$ 209,90 sem juros</span>
    </div>"""
    microdata_buybox = """<div itemscope itemtype="https://schema.org/Offer">
      <meta itemprop="priceCurrency" content="BRL">
      <span itemprop="price" content="2099.00">R$ 2.099,00</span>
      <link itemprop="availability" href="https://schema.org/InStock"></div>"""
    og = """<meta property="og:type" content="product">
      <meta property="og:title" content="Geladeira Frost Free 400L">
      <meta property="product:price:amount" content="2099.00">
      <meta property="product:price:currency" content="BRL">
      <meta property="product:availability" content="instock">"""
    n = 60
    while True:
        cards, scripts = _body(n)
        head = f"<head><meta charset='utf-8'><title>Geladeira</title>{styles}"
        page_a = (f"<!doctype html><html lang='pt-BR'>{head}"
                  f"<script type='application/ld+json'>{breadcrumbs}</script>"
                  f"<script type=\"application/ld+json\">{jsonld}</script></head>"
                  f"<body><h1>Geladeira</h1>{buybox}<section>{cards}</section>{scripts}</body></html>")
        page_b = (f"<!doctype html><html lang='pt-BR'>{head}{og}</head>"
                  f"<body><h1>Geladeira</h1>{microdata_buybox}<section>{cards}</section>"
                  f"{scripts}</body></html>")
        if len(page_a.encode()) >= target_kb * 1024:
            return page_a, page_b
        n += 20


def _time(fn, page: str) -> float:
    t0 = time.perf_counter()
    fn(page)
    return time.perf_counter() - t0


def main(rounds: int = 200) -> None:
    page_a, page_b = make_pages()
    html_a = page_a.encode()
    candidates = {
        "A extract_page (jsonld page)": (lambda p: extract_page(p), html_a),
        "B extruct json-ld": (lambda p: extruct.extract(p, syntaxes=["json-ld"], uniform=True), html_a),
        "C extruct json-ld+microdata+og": (
            lambda p: extruct.extract(p, syntaxes=["json-ld", "microdata", "opengraph"], uniform=True),
            html_a),
        "A' extract_page (fallback page)": (lambda p: extract_page(p), page_b.encode()),
        "D extruct opengraph+microdata": (
            lambda p: extruct.extract(p, syntaxes=["opengraph", "microdata"], uniform=True),
            page_b.encode()),
    }
    # sanity: same answers
    got_a = extract_page(html_a)
    got_b = extract_page(page_b.encode())
    ex = extruct.extract(page_b.encode(), syntaxes=["opengraph", "microdata"], uniform=True)
    print(f"page sizes: jsonld page {len(html_a) / 1024:.0f} KB, fallback page "
          f"{len(page_b.encode()) / 1024:.0f} KB; rounds {rounds}")
    print(f"extract_page jsonld page: method={got_a.method} "
          f"quotes={[(q.kind.value, str(q.money.amount)) for q in got_a.quotes]}")
    print(f"extract_page fallback page: method={got_b.method} "
          f"quotes={[(q.kind.value, str(q.money.amount)) for q in got_b.quotes]}")
    print(f"extruct og+microdata on fallback: og={ex['opengraph'][:1]} "
          f"microdata offers={[m.get('price') for m in ex['microdata']][:3]}")
    for fn, page in candidates.values():  # warm-up
        fn(page)
    samples: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(rounds):
        for name, (fn, page) in candidates.items():  # interleaved A B C A' D A B C ...
            samples[name].append(_time(fn, page))
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"\n{'implementation':36} {'median ms/page':>14} {'pages/s':>9} {'p90 ms':>8}")
    for name, values in samples.items():
        p90 = sorted(values)[int(len(values) * 0.9)]
        print(f"{name:36} {med[name] * 1000:14.2f} {1 / med[name]:9.0f} {p90 * 1000:8.2f}")
    base = med["A extract_page (jsonld page)"]
    print("\nratios (same run):")
    print(f"  extruct json-ld only / extract_page        = {med['B extruct json-ld'] / base:.2f}x")
    print(f"  extruct all three / extract_page           = "
          f"{med['C extruct json-ld+microdata+og'] / base:.2f}x")
    print(f"  extruct og+microdata / extract_page fallback = "
          f"{med['D extruct opengraph+microdata'] / med[chr(65) + chr(39) + ' extract_page (fallback page)']:.2f}x")
    print(f"  2-core ceiling at A's median: ~{2 / base:.0f} pages/s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
