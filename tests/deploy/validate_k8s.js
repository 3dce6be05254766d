// Schema check of rendered Kubernetes manifests, for the deploy.manifests
// test: every object in the YAML files named on the command line is built
// as the kubernetes-models class of its apiVersion and kind and validated
// against that API's OpenAPI schema (types, required fields, enums).
//
//   node validate_k8s.js RENDERED.yaml...
//
// Prints one line per object; exits 1 if any object is invalid or of a kind
// kubernetes-models does not know (a typo in apiVersion or kind).
"use strict";

const fs = require("fs");
const YAML = require("yaml");

// "apps/v1" -> "kubernetes-models/apps/v1"; the core group "v1" ->
// "kubernetes-models/v1".
function modelClass(apiVersion, kind) {
  let module;
  try {
    module = require(`kubernetes-models/${apiVersion}`);
  } catch (error) {
    return null;
  }
  return module[kind] || null;
}

function validateFile(path) {
  let failures = 0;
  const documents = YAML.parseAllDocuments(fs.readFileSync(path, "utf8"));
  for (const document of documents) {
    if (document.errors.length > 0) {
      console.log(`${path}: YAML error: ${document.errors[0].message}`);
      failures++;
      continue;
    }
    const object = document.toJS();
    if (object === null) continue;
    const metadata = object.metadata || {};
    const name = `${object.apiVersion} ${object.kind} ${metadata.name}`;
    const Model = modelClass(object.apiVersion, object.kind);
    if (Model === null) {
      console.log(`FAIL ${name}: no kubernetes-models class for it`);
      failures++;
      continue;
    }
    try {
      new Model(object).validate();
      console.log(`ok   ${name}`);
    } catch (error) {
      console.log(`FAIL ${name}: ${error.message}`);
      failures++;
    }
  }
  return failures;
}

function main(paths) {
  if (paths.length === 0) {
    console.error("usage: node validate_k8s.js RENDERED.yaml...");
    return 2;
  }
  let failures = 0;
  for (const path of paths) failures += validateFile(path);
  return failures === 0 ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
