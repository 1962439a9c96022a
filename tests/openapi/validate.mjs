// Validates one OpenAPI document (a file) with two independent validators:
// @apidevtools/swagger-parser checks it against the OpenAPI 3.1 schema with
// every $ref resolved; Redocly's lint applies its recommended-strict rules
// (unique operationIds, declared path parameters, a 4xx per operation,
// used components, ...). Exits non-zero on any finding of either.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import SwaggerParser from '@apidevtools/swagger-parser';

const file = process.argv[2];
const here = dirname(fileURLToPath(import.meta.url));
const doc = JSON.parse(readFileSync(file, 'utf8'));
let failed = false;

if (doc.openapi !== '3.1.0') {
  console.log(`not ok - openapi is ${doc.openapi}, want 3.1.0`);
  failed = true;
}
try {
  await SwaggerParser.validate(structuredClone(doc));
  console.log('ok - @apidevtools/swagger-parser: valid OpenAPI 3.1');
} catch (err) {
  console.log(`not ok - @apidevtools/swagger-parser: ${err.message}`);
  failed = true;
}
try {
  execFileSync(join(here, 'node_modules/.bin/redocly'), ['lint', '--config', join(here, 'redocly.yaml'), file],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' } });
  console.log('ok - @redocly/cli lint (recommended-strict): no problems');
} catch (err) {
  console.log(`not ok - @redocly/cli lint:\n${err.stdout}${err.stderr}`);
  failed = true;
}
process.exit(failed ? 1 : 0);
