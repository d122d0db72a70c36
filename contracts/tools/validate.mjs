// Validate Homeward's published contracts with third-party tools, in one Node process:
//   1. the AsyncAPI document, with the official AsyncAPI parser (@asyncapi/parser 3);
//   2. events (a JSON array of CloudEvents), each against the committed JSON Schema of its
//      type, with ajv (draft 2020-12) and ajv-formats.
//
// node validate.mjs --modules <node_modules dir> --asyncapi <file> [--events <file> --schemas <dir>]
//
// Prints one JSON report on stdout:
//   {"asyncapi": {"errors": [...], "warnings": [...], "infos": [...]},
//    "events": {"checked": n, "invalid": [{"index", "id", "type", "errors"}]}}
// and exits 0 when the parser reports no error and every event is valid, 1 otherwise,
// 2 on bad usage or a missing dependency.
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

function args(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`bad argument: ${argv[i]}`);
    }
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}

function fail(message) {
  process.stderr.write(`validate.mjs: ${message}\n`);
  process.exit(2);
}

let opts;
try {
  opts = args(process.argv.slice(2));
} catch (e) {
  fail(e.message);
}
for (const name of ['modules', 'asyncapi']) {
  if (!opts[name]) fail(`--${name} is required`);
}
if (opts.events && !opts.schemas) fail('--events needs --schemas');

// The packages live in a git-ignored install (npm ci into .local/node), not next to this
// script, so resolve them from there.
const require = createRequire(join(resolve(opts.modules), 'package.json'));
let Parser, DiagnosticSeverity, Ajv2020, addFormats;
try {
  ({ Parser, DiagnosticSeverity } = require('@asyncapi/parser'));
  Ajv2020 = require('ajv/dist/2020').default;
  addFormats = require('ajv-formats').default;
} catch (e) {
  fail(`cannot load @asyncapi/parser, ajv or ajv-formats from ${opts.modules}: ${e.message}`);
}

function diagnostic(d) {
  return {
    code: d.code,
    message: d.message,
    path: (d.path || []).join('.'),
    line: d.range ? d.range.start.line + 1 : undefined,
  };
}

async function checkAsyncapi(file) {
  const parser = new Parser();
  const text = readFileSync(file, 'utf8');
  const { document, diagnostics } = await parser.parse(text, { source: resolve(file) });
  const bySeverity = (s) => diagnostics.filter((d) => d.severity === s).map(diagnostic);
  const errors = bySeverity(DiagnosticSeverity.Error);
  if (!document && errors.length === 0) {
    errors.push({ code: 'no-document', message: 'the parser returned no document', path: '' });
  }
  return {
    errors,
    warnings: bySeverity(DiagnosticSeverity.Warning),
    infos: bySeverity(DiagnosticSeverity.Information),
  };
}

function checkEvents(schemaDir, events) {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);
  const byType = new Map();
  for (const name of readdirSync(schemaDir).filter((n) => n.endsWith('.json')).sort()) {
    const schema = JSON.parse(readFileSync(join(schemaDir, name), 'utf8'));
    const type = schema.properties?.type?.const;
    if (!type) throw new Error(`${name}: no properties.type.const, cannot tell which events it describes`);
    byType.set(type, ajv.compile(schema));
  }
  const invalid = [];
  events.forEach((event, index) => {
    const validate = byType.get(event?.type);
    if (!validate) {
      invalid.push({ index, id: event?.id, type: event?.type, errors: ['no JSON Schema for this type'] });
    } else if (!validate(event)) {
      const errors = validate.errors.map((e) => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
      invalid.push({ index, id: event.id, type: event.type, errors });
    }
  });
  return { checked: events.length, schemas: byType.size, invalid };
}

const report = {};
try {
  report.asyncapi = await checkAsyncapi(opts.asyncapi);
  if (opts.events) {
    report.events = checkEvents(opts.schemas, JSON.parse(readFileSync(opts.events, 'utf8')));
  }
} catch (e) {
  fail(e.stack || String(e));
}
process.stdout.write(JSON.stringify(report, null, 2) + '\n');
const ok = report.asyncapi.errors.length === 0 && (!report.events || report.events.invalid.length === 0);
process.exit(ok ? 0 : 1);
