// PEP 691 content negotiation for /simple/, run by nginx's njs module.
//
// nginx's own `map` can match an Accept header but cannot weigh it, and today's
// clients weigh: pip asks for JSON at q=1 and HTML at q=0.1 and 0.01, uv at 1, 0.2
// and 0.01, a browser for HTML at 1 and anything at 0.8.
//
// The rule is src/mirrorfleet/content/negotiate.py's `choose_page`, which the
// monitor probes with; tests/unit/test_nginx_site.py runs its cases through both:
//   JSON (index.v1_json) only to a client naming it; PEP 691's HTML and text/html
//   from the same page file (index.html, else bandersnatch's index.v1_html);
//   each form takes the q of the most specific range matching it; the highest q
//   wins; on a tie a form the client named beats one a wildcard matched, then
//   JSON, PEP 691's HTML, text/html (text/html first among wildcard matches);
//   no Accept is `*/*`; nothing acceptable: 406. A folder with no page: 404.
//
// The answer is an internal path, /.pep691/<form>/<path in the tree>, that the
// site serves with that form's Content-Type.

var fs = require('fs');

var JSON_TYPE = 'application/vnd.pypi.simple.v1+json';
var V1_HTML_TYPE = 'application/vnd.pypi.simple.v1+html';
var ALIASES = {};
ALIASES[JSON_TYPE] = 'application/vnd.pypi.simple.latest+json';
ALIASES[V1_HTML_TYPE] = 'application/vnd.pypi.simple.latest+html';
var JSON_PAGE = 'index.v1_json';
var HTML_PAGES = ['index.html', 'index.v1_html'];
// what a normalized project name (PEP 503) and simple/ itself are made of
var SAFE_URI = /^\/simple\/([a-z0-9][a-z0-9._-]*\/)?$/;
var MAX_HEADER = 8192;
var MAX_ENTRIES = 64;
var Q = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/;

function ranges(accept) {
    if (!accept || !accept.trim()) {
        return [{type: '*', subtype: '*', q: 1}];
    }
    var out = [];
    var items = accept.slice(0, MAX_HEADER).split(',').slice(0, MAX_ENTRIES);
    for (var i = 0; i < items.length; i++) {
        var params = items[i].split(';');
        var media = params[0].trim().toLowerCase();
        var slash = media.indexOf('/');
        var kind = media.slice(0, slash);
        var sub = media.slice(slash + 1);
        if (slash < 0 || !kind || !sub || (kind === '*' && sub !== '*')) {
            continue;
        }
        var q = 1;
        for (var j = 1; j < params.length; j++) {
            var eq = params[j].indexOf('=');
            var key = (eq < 0 ? params[j] : params[j].slice(0, eq)).trim().toLowerCase();
            if (key === 'q') {
                var value = eq < 0 ? '' : params[j].slice(eq + 1).trim();
                q = Q.test(value) ? parseFloat(value) : null;
                break;
            }
        }
        if (q !== null) {
            out.push({type: kind, subtype: sub, q: q});
        }
    }
    return out;
}

// [q, named]: the q of the most specific range matching `type`.
function quality(accepted, type) {
    var kind = type.split('/')[0];
    var rank = 0;
    var q = 0;
    for (var i = 0; i < accepted.length; i++) {
        var r = accepted[i];
        var full = r.type + '/' + r.subtype;
        var s = full === type || full === ALIASES[type] ? 3
            : r.type === kind && r.subtype === '*' ? 2
            : r.type === '*' ? 1 : 0;
        if (s > rank || (s === rank && s > 0 && r.q > q)) {
            rank = s;
            q = r.q;
        }
    }
    return [rank ? q : 0, rank === 3];
}

function exists(r, file) {
    try {
        fs.accessSync(r.variables.document_root + r.uri + file);
        return true;
    } catch (e) {
        return false;
    }
}

function better(a, b) {
    for (var i = 0; i < a.length; i++) {
        if (a[i] !== b[i]) {
            return a[i] > b[i];
        }
    }
    return false;
}

// The internal path answering a request for a /simple/ folder; '' for 406.
function page(r) {
    if (!SAFE_URI.test(r.uri)) {
        return '/.pep691/none';  // no project is named so: 404
    }
    var accepted = ranges(r.headersIn.Accept);
    var html = null;
    for (var h = 0; h < HTML_PAGES.length && html === null; h++) {
        html = exists(r, HTML_PAGES[h]) ? HTML_PAGES[h] : null;
    }
    var json = exists(r, JSON_PAGE);
    if (!json && html === null) {
        return '/.pep691/html' + r.uri + 'index.html';  // not a project: 404
    }
    // [q, named, rank, form, file]
    var candidates = [];
    var got;
    if (json) {
        got = quality(accepted, JSON_TYPE);
        if (got[1] && got[0] > 0) {
            candidates.push([got[0], 1, 3, 'json', JSON_PAGE]);
        }
    }
    if (html !== null) {
        got = quality(accepted, V1_HTML_TYPE);
        if (got[0] > 0) {
            candidates.push([got[0], got[1] ? 1 : 0, got[1] ? 2 : 0, 'v1_html', html]);
        }
        got = quality(accepted, 'text/html');
        if (got[0] > 0) {
            candidates.push([got[0], got[1] ? 1 : 0, 1, 'html', html]);
        }
    }
    var best = null;
    for (var i = 0; i < candidates.length; i++) {
        if (best === null || better(candidates[i].slice(0, 3), best.slice(0, 3))) {
            best = candidates[i];
        }
    }
    return best === null ? '' : '/.pep691/' + best[3] + r.uri + best[4];
}

export default {page};
