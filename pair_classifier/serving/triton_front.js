/*
 * The nginx front of `pair-classifier serve triton` (njs 0.7.9, Debian's libnginx-mod-http-js).
 *
 * Triton 2.51's HTTP frontend answers 500 to an inference request whose JSON it cannot read
 * ("failed to parse the request JSON buffer", "Unable to parse 'data': attempt to access JSON
 * non-string as string"): it files JSON errors as internal errors. `infer` reads the request
 * first and refuses those with a 400 that names the problem; every other request goes to Triton
 * unchanged, by an internal redirect to the proxied location (the same body, the same kept-alive
 * connections, Triton's answer passed back as it comes).
 *
 * Checked: what Triton's JSON reader needs to read a request of the v2 inference protocol (the
 * types of `id`, `parameters`, `inputs`, `outputs` and of each data element for its datatype).
 * The model's own rules (input names, shapes, batch sizes, texts) stay with Triton and the model.
 * A request with binary tensors (header Inference-Header-Content-Length) has its JSON part
 * checked; the tensors' bytes are Triton's and the model's to read.
 */

const TRITON = '@triton'; // the location that proxies to Triton
const HEADER_LENGTH = 'Inference-Header-Content-Length';
const UINT64_END = 18446744073709551616; // 2^64
const INT64_END = 9223372036854775808; // 2^63

const isString = (value) => typeof value === 'string';
const isBoolean = (value) => typeof value === 'boolean';
const isNumber = (value) => typeof value === 'number' && isFinite(value);
const isInteger = (value) => Number.isInteger(value) && value >= -INT64_END && value < INT64_END;
const isUnsigned = (value) => Number.isInteger(value) && value >= 0 && value < UINT64_END;
const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

// What a JSON data element of each datatype must be: [its description, its test].
const STRING = ['a string', isString];
const INTEGER = ['an integer', isInteger];
const UNSIGNED = ['an unsigned integer', isUnsigned];
const NUMBER = ['a finite number', isNumber];
const DATATYPES = {
    BYTES: STRING,
    BOOL: ['a boolean', isBoolean],
    INT8: INTEGER,
    INT16: INTEGER,
    INT32: INTEGER,
    INT64: INTEGER,
    UINT8: UNSIGNED,
    UINT16: UNSIGNED,
    UINT32: UNSIGNED,
    UINT64: UNSIGNED,
    FP16: NUMBER,
    FP32: NUMBER,
    FP64: NUMBER,
};
// The parameters Triton reads itself, and what each must be.
const INPUT_PARAMETERS = {
    binary_data_size: UNSIGNED,
    shared_memory_region: STRING,
    shared_memory_offset: UNSIGNED,
    shared_memory_byte_size: UNSIGNED,
};
const OUTPUT_PARAMETERS = {
    binary_data: ['a boolean', isBoolean],
    classification: UNSIGNED,
    shared_memory_region: STRING,
    shared_memory_offset: UNSIGNED,
    shared_memory_byte_size: UNSIGNED,
};

// What a JSON value is, for a message: "got null", "got an array", "got a number".
function kind(value) {
    if (value === undefined) return 'nothing (it is missing)';
    if (value === null) return 'null';
    if (Array.isArray(value)) return 'an array';
    if (typeof value === 'number' && !isFinite(value)) return 'a number out of range';
    return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function expected(where, description, value) {
    return `${where}: expected ${description}, got ${kind(value)}`;
}

function parametersProblem(where, parameters, known) {
    if (parameters === undefined) return null;
    if (!isObject(parameters)) return expected(`${where} 'parameters'`, 'an object', parameters);
    for (const name in parameters) {
        const rule = known[name];
        if (rule && !rule[1](parameters[name])) {
            return expected(`${where} parameter '${name}'`, rule[0], parameters[name]);
        }
    }
    return null;
}

// The flat index of the first element of (possibly nested) `values` that fails `test`, or -1.
function badElement(values, test, counter) {
    for (let i = 0; i < values.length; i++) {
        const value = values[i];
        if (Array.isArray(value)) {
            const bad = badElement(value, test, counter);
            if (bad >= 0) return bad;
        } else if (!test(value)) {
            return counter.next;
        } else {
            counter.next++;
        }
    }
    return -1;
}

function elementAt(values, index) {
    const flat = [];
    const walk = (items) => items.forEach((item) => (Array.isArray(item) ? walk(item) : flat.push(item)));
    walk(values);
    return flat[index];
}

function inputProblem(input, position) {
    if (!isObject(input)) return expected(`inputs[${position}]`, 'an object', input);
    if (!isString(input.name)) return expected(`inputs[${position}] 'name'`, 'a string', input.name);
    const where = `input '${input.name}'`;
    if (!isString(input.datatype)) return expected(`${where} 'datatype'`, 'a string', input.datatype);
    if (!Array.isArray(input.shape)) return expected(`${where} 'shape'`, 'an array', input.shape);
    for (let i = 0; i < input.shape.length; i++) {
        if (!isUnsigned(input.shape[i])) {
            return expected(`${where} 'shape' element ${i}`, 'an unsigned integer', input.shape[i]);
        }
    }
    const problem = parametersProblem(where, input.parameters, INPUT_PARAMETERS);
    if (problem || input.data === undefined) return problem;
    if (!Array.isArray(input.data)) return expected(`${where} 'data'`, 'an array', input.data);
    const rule = DATATYPES[input.datatype];
    if (!rule) return null; // Triton names an unknown datatype itself (400)
    const bad = badElement(input.data, rule[1], { next: 0 });
    if (bad < 0) return null;
    const description = `${rule[0]} (datatype ${input.datatype})`;
    return expected(`${where}, data element ${bad}`, description, elementAt(input.data, bad));
}

function outputProblem(output, position) {
    if (!isObject(output)) return expected(`outputs[${position}]`, 'an object', output);
    if (!isString(output.name)) return expected(`outputs[${position}] 'name'`, 'a string', output.name);
    return parametersProblem(`output '${output.name}'`, output.parameters, OUTPUT_PARAMETERS);
}

function requestProblem(request) {
    if (!isObject(request)) return expected('the request', 'a JSON object', request);
    if (request.id !== undefined && !isString(request.id)) {
        return expected("'id'", 'a string', request.id);
    }
    if (request.parameters !== undefined && !isObject(request.parameters)) {
        return expected("'parameters'", 'an object', request.parameters);
    }
    if (!Array.isArray(request.inputs)) {
        return expected("'inputs'", 'an array of input tensors', request.inputs);
    }
    for (let i = 0; i < request.inputs.length; i++) {
        const problem = inputProblem(request.inputs[i], i);
        if (problem) return problem;
    }
    if (request.outputs === undefined) return null;
    if (!Array.isArray(request.outputs)) {
        return expected("'outputs'", 'an array of requested outputs', request.outputs);
    }
    for (let i = 0; i < request.outputs.length; i++) {
        const problem = outputProblem(request.outputs[i], i);
        if (problem) return problem;
    }
    return null;
}

// What is wrong with the request's JSON, or null (also for what Triton answers with a 4xx itself:
// no body, a binary-tensor header length out of range).
function bodyProblem(r) {
    const body = r.requestBuffer;
    if (!body || body.length === 0) return null;
    let json = body;
    let what = 'the request body';
    const headerLength = r.headersIn[HEADER_LENGTH];
    if (headerLength !== undefined) {
        const length = Number(headerLength);
        if (!Number.isInteger(length) || length <= 0 || length > body.length) return null;
        json = body.slice(0, length);
        what = `the inference header (the body's first ${length} bytes, ${HEADER_LENGTH})`;
    }
    let request;
    try {
        request = JSON.parse(json.toString());
    } catch (error) {
        return `malformed JSON in ${what}: ${error.message}`;
    }
    return requestProblem(request);
}

function infer(r) {
    const problem = r.method === 'POST' ? bodyProblem(r) : null;
    if (problem) {
        r.headersOut['Content-Type'] = 'application/json';
        r.return(400, JSON.stringify({ error: problem }) + '\n');
        return;
    }
    r.internalRedirect(TRITON);
}

export default { infer };
