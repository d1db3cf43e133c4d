// PEP 691 content negotiation for /simple/, run by nginx's njs module.
//
// nginx's own `map` can match an Accept header but cannot weigh it, and today's
// clients weigh: pip asks for JSON at q=1 and HTML at q=0.1 and 0.01, uv at 1, 0.2
// and 0.01, a browser for HTML at 1 and anything at 0.8. The rule is Warehouse's,
// which every client is written against: each offer gets the q of the most
// specific range that matches it; the highest q wins, ties go to the server's
// order (JSON first); nothing acceptable, or no Accept at all, gets text/html.
// `?format=<type>` overrides the header (PEP 691 allows it; Warehouse honours it).
//
// The same rule, with the same cases, is src/mirrorfleet/content/negotiate.py,
// which the monitor uses to know what a mirror must answer.

var OFFERS = [
    ['application/vnd.pypi.simple.v1+json', 'index.v1_json'],
    ['application/vnd.pypi.simple.v1+html', 'index.v1_html'],
    ['text/html', 'index.html'],
];
var HTML = OFFERS[2];
var MAX_RANGES = 64;  // a longer header is not a client's: its first ranges decide

function ranges(accept) {
    var out = [];
    var parts = accept.split(',').slice(0, MAX_RANGES);
    for (var i = 0; i < parts.length; i++) {
        var fields = parts[i].split(';');
        var type = fields[0].trim().toLowerCase();
        if (type.indexOf('/') < 0) {
            continue;
        }
        var q = 1;
        for (var j = 1; j < fields.length; j++) {
            var eq = fields[j].indexOf('=');
            if (eq > 0 && fields[j].slice(0, eq).trim().toLowerCase() === 'q') {
                var value = fields[j].slice(eq + 1).trim();
                q = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(value) ? parseFloat(value) : 0;
            }
        }
        out.push({type: type, q: q});
    }
    return out;
}

function quality(accepted, offer) {
    var major = offer.split('/')[0] + '/*';
    var best = -1;
    var specificity = -1;
    for (var i = 0; i < accepted.length; i++) {
        var range = accepted[i];
        var s = range.type === offer ? 2 : range.type === major ? 1 : range.type === '*/*' ? 0 : -1;
        if (s > specificity || (s === specificity && s >= 0 && range.q > best)) {
            specificity = s;
            best = range.q;
        }
    }
    return specificity < 0 ? 0 : best;
}

function choose(r) {
    // a "+" left unescaped in the query reads as a space
    var format = typeof r.args.format === 'string' ? r.args.format.replace(/ /g, '+') : '';
    if (format) {
        for (var k = 0; k < OFFERS.length; k++) {
            if (OFFERS[k][0] === format) {
                return OFFERS[k];
            }
        }
    }
    var accept = r.headersIn.Accept;
    if (!accept) {
        return HTML;
    }
    var accepted = ranges(accept);
    var chosen = HTML;
    var top = 0;
    for (var i = 0; i < OFFERS.length; i++) {
        var q = quality(accepted, OFFERS[i][0]);
        if (q > top) {
            top = q;
            chosen = OFFERS[i];
        }
    }
    return chosen;
}

// The page to serve: nginx's `index` falls back to index.html when it is missing.
function page(r) {
    return choose(r)[1];
}

export default {page};
