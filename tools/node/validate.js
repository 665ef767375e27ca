// Validate GLB/glTF files with the Khronos glTF Validator; prints one JSON report per file (a JSON array).
// Usage: node validate.js FILE... ; or "-" to read one GLB from stdin.
const fs = require("fs");
const validator = require("gltf-validator");

async function main() {
  const files = process.argv.slice(2);
  const reports = [];
  for (const f of files) {
    const bytes = f === "-" ? fs.readFileSync(0) : fs.readFileSync(f);
    const report = await validator.validateBytes(new Uint8Array(bytes), { maxIssues: 200 });
    report.uri = f;
    reports.push(report);
  }
  process.stdout.write(JSON.stringify(reports));
}
main().catch((e) => { console.error(e); process.exit(2); });
