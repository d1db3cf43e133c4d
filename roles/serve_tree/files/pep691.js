// PEP 691 content negotiation for /simple/, run by nginx's njs module.
//
// nginx's own `map` can match an Accept header but cannot weigh it, and today's
// clients weigh: pip asks for JSON at q=1 and HTML at q=0.1 and 0.01, uv at 1, 0.2
// and 0.01, a browser for HTML at 1 and anything at 0.8.
//
// The rule is src/mirrorfleet/content/negotiate.py's `choose_page`, which the
// monitor probes with; tests/unit/test_nginx_site.py runs one table of cases
// through both. Each form is a file of the project's folder, served with its own
// type, and only a form whose file exists is offered:
//   index.v1_json  application/vnd.pypi.simple.v1+json (only to a client naming it)
//   index.v1_html  application/vnd.pypi.simple.v1+html
//   index.html     text/html
// A form takes the q of the most specific range matching it; the highest q wins;
// on a tie a form the client named beats one a wildcard matched, then JSON, PEP
// 691's HTML, text/html (text/html first among wildcard matches). No Accept is
// `*/*`. Nothing acceptable: 406. No page at all: 404, as for any missing file.

var fs = require('fs');

var JSON_TYPE = 'application/vnd.pypi.simple.v1+json';
var V1_HTML_TYPE = 'application/vnd.pypi.simple.v1+html';
var ALIASES = {};
ALIASES[JSON_TYPE] = 'application/vnd.pypi.simple.latest+json';
ALIASES[V1_HTML_TYPE] = 'application/vnd.pypi.simple.latest+html';
// [type, file, rank among named matches, rank among wildcard-only matches]
var FORMS = [
    [JSON_TYPE, 'index.v1_json', 3, -1],
    [V1_HTML_TYPE, 'index.v1_html', 2, 0],
    ['text/html', 'index.html', 1, 1],
];
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

// The file answering a request for a /simple/ folder; '' for 406.
function page(r) {
    var accepted = ranges(r.headersIn.Accept);
    var best = null;
    var any = false;
    for (var i = 0; i < FORMS.length; i++) {
        var form = FORMS[i];
        if (!exists(r, form[1])) {
            continue;
        }
        any = true;
        var got = quality(accepted, form[0]);
        var q = got[0];
        var named = got[1];
        if (q <= 0 || (form[0] === JSON_TYPE && !named)) {
            continue;
        }
        var key = [q, named ? 1 : 0, named ? form[2] : form[3]];
        if (best === null || key[0] > best.key[0]
            || (key[0] === best.key[0] && (key[1] > best.key[1]
                || (key[1] === best.key[1] && key[2] > best.key[2])))) {
            best = {key: key, file: form[1]};
        }
    }
    if (!any) {
        return 'index.html';  // not a project: nginx answers 404
    }
    return best === null ? '' : best.file;
}

export default {page};
