/* run_saved_model: runs one signature of a SavedModel through TensorFlow's C API, no Python.
 *
 * It loads the export with TF_LoadSessionFromSavedModel (tag "serve"; the C API wraps
 * tensorflow::LoadSavedModel, the loader TensorFlow Serving links), reads the signature's
 * inputs and outputs from the MetaGraphDef the loader returns (a small protobuf reader
 * below: SignatureDef maps are all it needs), feeds .npy files and writes every output of
 * the signature as <output_dir>/<output key>.npy.
 *
 *   run_saved_model EXPORT_DIR --list
 *   run_saved_model EXPORT_DIR SIGNATURE KEY=FILE.npy [KEY=FILE.npy ...] [-o OUTPUT_DIR]
 *
 * .npy files: format 1.0-3.0, C order, little-endian; dtypes float16/32/64, int8/16/32/64,
 * uint8/16/32/64, bool, and fixed-width bytes (|S<n>, for tf.string inputs such as encoded
 * images; numpy drops trailing NUL bytes of such strings). The dtype must be the one the
 * signature declares: nothing is converted, so the numbers fed are exactly the file's.
 *
 * Build (docs/serving_c.md; export/c_loader/Makefile does the same):
 *   TF_INC=$(python -c "import tensorflow as tf; print(tf.sysconfig.get_include())")
 *   TF_LIB=$(python -c "import tensorflow as tf; print(tf.sysconfig.get_lib())")
 *   gcc -O2 -std=c11 -I"$TF_INC" run_saved_model.c -o run_saved_model \
 *       -L"$TF_LIB" -l:libtensorflow_cc.so.2 -l:libtensorflow_framework.so.2 \
 *       -Wl,-rpath,"$TF_LIB"
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tensorflow/c/c_api.h"
#include "tensorflow/c/tf_tstring.h"

#define MAX_TENSORS 64
#define MAX_DIMS 32
#define MAX_NAME 512

static void die(const char *format, const char *a, const char *b) {
  fprintf(stderr, "run_saved_model: ");
  fprintf(stderr, format, a ? a : "", b ? b : "");
  fprintf(stderr, "\n");
  exit(1);
}

/* --- protobuf wire format (only what SignatureDef maps need) ----------------------- */

typedef struct {
  const uint8_t *data;
  size_t size;
} Bytes;

typedef struct {
  char key[MAX_NAME];  /* The signature's name for it, e.g. "images". */
  char name[MAX_NAME]; /* The graph tensor, e.g. "serving_default_images:0". */
  int dtype;           /* TF_DataType. */
} TensorInfo;

typedef struct {
  char name[MAX_NAME];
  TensorInfo inputs[MAX_TENSORS], outputs[MAX_TENSORS];
  int num_inputs, num_outputs;
} Signature;

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *value) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t byte = *(*p)++;
    result |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      *value = result;
      return 1;
    }
  }
  return 0;
}

/* The next field of a message: its number and either its varint or its bytes. Returns 0
 * at the end, -1 on malformed input. Fixed-size fields are skipped (value unused). */
static int next_field(const uint8_t **p, const uint8_t *end, uint32_t *field, uint64_t *value,
                      Bytes *bytes) {
  uint64_t key, length;
  if (*p >= end) return 0;
  if (!read_varint(p, end, &key)) return -1;
  *field = (uint32_t)(key >> 3);
  bytes->data = NULL;
  bytes->size = 0;
  switch (key & 7) {
    case 0: return read_varint(p, end, value) ? 1 : -1;
    case 1: if (end - *p < 8) return -1; *p += 8; return 1;
    case 5: if (end - *p < 4) return -1; *p += 4; return 1;
    case 2:
      if (!read_varint(p, end, &length) || length > (uint64_t)(end - *p)) return -1;
      bytes->data = *p;
      bytes->size = (size_t)length;
      *p += length;
      return 1;
    default: return -1; /* Groups: not used by MetaGraphDef. */
  }
}

static void copy_string(char *out, Bytes bytes) {
  size_t n = bytes.size < MAX_NAME - 1 ? bytes.size : MAX_NAME - 1;
  memcpy(out, bytes.data, n);
  out[n] = '\0';
}

/* A map entry (key = field 1, value = field 2) of string -> message. */
static int map_entry(Bytes entry, char *key, Bytes *value) {
  const uint8_t *p = entry.data, *end = entry.data + entry.size;
  uint32_t field;
  uint64_t number;
  Bytes bytes;
  int status;
  key[0] = '\0';
  value->data = NULL;
  value->size = 0;
  while ((status = next_field(&p, end, &field, &number, &bytes)) == 1) {
    if (field == 1 && bytes.data) copy_string(key, bytes);
    if (field == 2 && bytes.data) *value = bytes;
  }
  return status == 0;
}

/* TensorInfo: name = 1 (string), dtype = 2 (enum). */
static int tensor_info(Bytes message, TensorInfo *info) {
  const uint8_t *p = message.data, *end = message.data + message.size;
  uint32_t field;
  uint64_t number;
  Bytes bytes;
  int status;
  info->name[0] = '\0';
  info->dtype = 0;
  while ((status = next_field(&p, end, &field, &number, &bytes)) == 1) {
    if (field == 1 && bytes.data) copy_string(info->name, bytes);
    if (field == 2 && !bytes.data) info->dtype = (int)number;
  }
  return status == 0 && info->name[0];
}

/* SignatureDef: inputs = 1, outputs = 2 (maps string -> TensorInfo). */
static int signature_def(Bytes message, Signature *signature) {
  const uint8_t *p = message.data, *end = message.data + message.size;
  uint32_t field;
  uint64_t number;
  Bytes bytes, value;
  int status;
  signature->num_inputs = signature->num_outputs = 0;
  while ((status = next_field(&p, end, &field, &number, &bytes)) == 1) {
    if ((field != 1 && field != 2) || !bytes.data) continue;
    TensorInfo *list = field == 1 ? signature->inputs : signature->outputs;
    int *count = field == 1 ? &signature->num_inputs : &signature->num_outputs;
    if (*count == MAX_TENSORS) die("a signature has more than %s%s tensors", "64", NULL);
    if (!map_entry(bytes, list[*count].key, &value) || !tensor_info(value, &list[*count]))
      return 0;
    ++*count;
  }
  return status == 0;
}

/* Calls `visit` for every signature of the MetaGraphDef (field 5). */
static void for_each_signature(const TF_Buffer *meta_graph,
                               void (*visit)(Signature *, void *), void *context) {
  const uint8_t *p = meta_graph->data, *end = p + meta_graph->length;
  uint32_t field;
  uint64_t number;
  Bytes bytes, value;
  int status;
  Signature *signature = calloc(1, sizeof(Signature));
  if (!signature) die("out of memory%s%s", NULL, NULL);
  while ((status = next_field(&p, end, &field, &number, &bytes)) == 1) {
    if (field != 5 || !bytes.data) continue;
    if (!map_entry(bytes, signature->name, &value) || !signature_def(value, signature))
      die("the MetaGraphDef's signature %s%s cannot be parsed", signature->name, NULL);
    visit(signature, context);
  }
  free(signature);
  if (status != 0) die("the MetaGraphDef cannot be parsed%s%s", NULL, NULL);
}

/* --- dtypes ----------------------------------------------------------------------- */

typedef struct {
  const char *descr; /* numpy's dtype.str on a little-endian machine */
  TF_DataType dtype;
  const char *name;
} DtypeEntry;

static const DtypeEntry DTYPES[] = {
    {"<f4", TF_FLOAT, "float32"},   {"<f8", TF_DOUBLE, "float64"},
    {"<f2", TF_HALF, "float16"},    {"<i4", TF_INT32, "int32"},
    {"<i8", TF_INT64, "int64"},     {"<i2", TF_INT16, "int16"},
    {"|i1", TF_INT8, "int8"},       {"|u1", TF_UINT8, "uint8"},
    {"<u2", TF_UINT16, "uint16"},   {"<u4", TF_UINT32, "uint32"},
    {"<u8", TF_UINT64, "uint64"},   {"|b1", TF_BOOL, "bool"},
};

static const char *dtype_name(int dtype) {
  for (size_t i = 0; i < sizeof(DTYPES) / sizeof(DTYPES[0]); ++i)
    if ((int)DTYPES[i].dtype == dtype) return DTYPES[i].name;
  if (dtype == TF_STRING) return "string";
  return dtype == 0 ? "none" : "unsupported"; /* none: an operation, e.g. the init op */
}

/* --- .npy --------------------------------------------------------------------------- */

typedef struct {
  TF_DataType dtype;
  int ndims;
  int64_t dims[MAX_DIMS];
  size_t itemsize; /* Bytes per element (for |S<n>: n). */
  char *data;
  size_t nbytes;
} Array;

static char *read_file(const char *path, size_t *size) {
  FILE *file = fopen(path, "rb");
  if (!file) die("cannot open %s: %s", path, strerror(errno));
  if (fseek(file, 0, SEEK_END) != 0) die("cannot read %s%s", path, NULL);
  long length = ftell(file);
  if (length < 0) die("cannot read %s%s", path, NULL);
  rewind(file);
  char *data = malloc(length ? (size_t)length : 1);
  if (!data || fread(data, 1, (size_t)length, file) != (size_t)length)
    die("cannot read %s%s", path, NULL);
  fclose(file);
  *size = (size_t)length;
  return data;
}

static Array read_npy(const char *path) {
  Array array = {0};
  size_t size;
  char *file = read_file(path, &size);
  if (size < 10 || memcmp(file, "\x93NUMPY", 6) != 0) die("%s is not a .npy file%s", path, NULL);
  unsigned major = (unsigned char)file[6];
  size_t header_length, start;
  if (major == 1) {
    header_length = (unsigned char)file[8] | ((size_t)(unsigned char)file[9] << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) die("%s is truncated%s", path, NULL);
    header_length = 0;
    for (int i = 3; i >= 0; --i) header_length = (header_length << 8) | (unsigned char)file[8 + i];
    start = 12;
  } else {
    die("%s: unknown .npy format version%s", path, NULL);
  }
  if (start + header_length > size) die("%s is truncated%s", path, NULL);
  char *header = malloc(header_length + 1);
  memcpy(header, file + start, header_length);
  header[header_length] = '\0';

  char descr[32] = {0};
  const char *field = strstr(header, "'descr':");
  if (!field || sscanf(field + 8, " '%31[^']'", descr) != 1)
    die("%s: no dtype in the .npy header%s", path, NULL);
  field = strstr(header, "'fortran_order':");
  if (!field || strncmp(field + 16 + strspn(field + 16, " "), "False", 5) != 0)
    die("%s: Fortran-ordered arrays are not supported (save with numpy.ascontiguousarray)%s",
        path, NULL);
  array.dtype = (TF_DataType)0;
  for (size_t i = 0; i < sizeof(DTYPES) / sizeof(DTYPES[0]); ++i) {
    if (strcmp(descr, DTYPES[i].descr) == 0) {
      array.dtype = DTYPES[i].dtype;
      array.itemsize = TF_DataTypeSize(array.dtype);
    }
  }
  if (!array.dtype && descr[0] == '|' && descr[1] == 'S' && atoi(descr + 2) > 0) {
    array.dtype = TF_STRING;
    array.itemsize = (size_t)atoi(descr + 2);
  }
  if (!array.dtype)
    die("%s: dtype '%s' is not supported (little-endian numbers, bool or |S bytes)", path,
        descr);

  field = strstr(header, "'shape':");
  const char *p = field ? strchr(field, '(') : NULL;
  if (!p) die("%s: no shape in the .npy header%s", path, NULL);
  ++p;
  size_t count = 1;
  while (*p && *p != ')') {
    char *after;
    long long dim = strtoll(p, &after, 10);
    if (after == p) {
      ++p; /* ", " */
      continue;
    }
    if (array.ndims == MAX_DIMS || dim < 0) die("%s: unsupported shape%s", path, NULL);
    array.dims[array.ndims++] = dim;
    count *= (size_t)dim;
    p = after;
  }
  free(header);
  array.nbytes = count * array.itemsize;
  if (start + header_length + array.nbytes != size)
    die("%s: the data size does not match the header's shape and dtype%s", path, NULL);
  array.data = malloc(array.nbytes ? array.nbytes : 1);
  memcpy(array.data, file + start + header_length, array.nbytes);
  free(file);
  return array;
}

static void write_npy(const char *path, const char *descr, const int64_t *dims, int ndims,
                      const void *data, size_t nbytes) {
  char header[1024];
  int length = snprintf(header, sizeof(header), "{'descr': '%s', 'fortran_order': False, "
                        "'shape': (", descr);
  for (int i = 0; i < ndims; ++i)
    length += snprintf(header + length, sizeof(header) - length, "%lld%s",
                       (long long)dims[i], (ndims == 1 || i + 1 < ndims) ? ", " : "");
  if (ndims == 1) length -= 1; /* "(3,)": numpy's one-element tuple. */
  length += snprintf(header + length, sizeof(header) - length, "), }");
  /* numpy pads the header with spaces so that the data starts at a multiple of 64. */
  int total = 10 + length + 1;
  int padding = (64 - total % 64) % 64;
  FILE *file = fopen(path, "wb");
  if (!file) die("cannot write %s: %s", path, strerror(errno));
  unsigned header_length = (unsigned)(length + padding + 1);
  unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                (unsigned char)(header_length & 0xff),
                                (unsigned char)(header_length >> 8)};
  fwrite(preamble, 1, 10, file);
  fwrite(header, 1, (size_t)length, file);
  for (int i = 0; i < padding; ++i) fputc(' ', file);
  fputc('\n', file);
  if (nbytes && fwrite(data, 1, nbytes, file) != nbytes) die("cannot write %s%s", path, NULL);
  if (fclose(file) != 0) die("cannot write %s%s", path, NULL);
}

/* --- tensors ------------------------------------------------------------------------ */

static void free_buffer(void *data, size_t length, void *arg) {
  (void)length;
  (void)arg;
  free(data);
}

static TF_Tensor *to_tensor(Array *array) {
  if (array->dtype != TF_STRING) {
    TF_Tensor *tensor = TF_NewTensor(array->dtype, array->dims, array->ndims, array->data,
                                     array->nbytes, free_buffer, NULL);
    array->data = NULL; /* Owned by the tensor now. */
    return tensor;
  }
  size_t count = array->itemsize ? array->nbytes / array->itemsize : 0;
  TF_Tensor *tensor = TF_AllocateTensor(TF_STRING, array->dims, array->ndims,
                                        count * sizeof(TF_TString));
  TF_TString *strings = (TF_TString *)TF_TensorData(tensor);
  for (size_t i = 0; i < count; ++i) {
    const char *item = array->data + i * array->itemsize;
    size_t length = array->itemsize;
    while (length && item[length - 1] == '\0') --length; /* numpy's |S padding */
    TF_StringInit(&strings[i]);
    TF_StringCopy(&strings[i], item, length);
  }
  free(array->data);
  array->data = NULL;
  return tensor;
}

static void write_tensor(const char *path, TF_Tensor *tensor) {
  int ndims = TF_NumDims(tensor);
  int64_t dims[MAX_DIMS];
  size_t count = 1;
  if (ndims > MAX_DIMS) die("an output of %s has too many dimensions%s", path, NULL);
  for (int i = 0; i < ndims; ++i) {
    dims[i] = TF_Dim(tensor, i);
    count *= (size_t)dims[i];
  }
  TF_DataType dtype = TF_TensorType(tensor);
  if (dtype == TF_STRING) {
    const TF_TString *strings = (const TF_TString *)TF_TensorData(tensor);
    size_t width = 1;
    for (size_t i = 0; i < count; ++i)
      if (TF_StringGetSize(&strings[i]) > width) width = TF_StringGetSize(&strings[i]);
    char *data = calloc(count ? count : 1, width);
    for (size_t i = 0; i < count; ++i)
      memcpy(data + i * width, TF_StringGetDataPointer(&strings[i]),
             TF_StringGetSize(&strings[i]));
    char descr[32];
    snprintf(descr, sizeof(descr), "|S%zu", width);
    write_npy(path, descr, dims, ndims, data, count * width);
    free(data);
    return;
  }
  for (size_t i = 0; i < sizeof(DTYPES) / sizeof(DTYPES[0]); ++i) {
    if (DTYPES[i].dtype == dtype) {
      write_npy(path, DTYPES[i].descr, dims, ndims, TF_TensorData(tensor),
                TF_TensorByteSize(tensor));
      return;
    }
  }
  die("the output for %s has an unsupported dtype%s", path, NULL);
}

static TF_Output graph_output(TF_Graph *graph, const char *tensor_name) {
  char operation[MAX_NAME];
  int index = 0;
  const char *colon = strrchr(tensor_name, ':');
  size_t length = colon ? (size_t)(colon - tensor_name) : strlen(tensor_name);
  if (length >= sizeof(operation)) length = sizeof(operation) - 1;
  memcpy(operation, tensor_name, length);
  operation[length] = '\0';
  if (colon) index = atoi(colon + 1);
  TF_Output output = {TF_GraphOperationByName(graph, operation), index};
  if (!output.oper) die("the graph has no operation %s (tensor %s)", operation, tensor_name);
  return output;
}

/* --- main --------------------------------------------------------------------------- */

static void print_signature(Signature *signature, void *context) {
  (void)context;
  printf("signature %s\n", signature->name);
  for (int i = 0; i < signature->num_inputs; ++i)
    printf("  input  %s: %s %s\n", signature->inputs[i].key,
           dtype_name(signature->inputs[i].dtype), signature->inputs[i].name);
  for (int i = 0; i < signature->num_outputs; ++i)
    printf("  output %s: %s %s\n", signature->outputs[i].key,
           dtype_name(signature->outputs[i].dtype), signature->outputs[i].name);
}

typedef struct {
  const char *wanted;
  Signature found;
  int matched;
} Lookup;

static void find_signature(Signature *signature, void *context) {
  Lookup *lookup = context;
  if (strcmp(signature->name, lookup->wanted) == 0) {
    lookup->found = *signature;
    lookup->matched = 1;
  }
}

static void usage(void) {
  fprintf(stderr,
          "usage: run_saved_model EXPORT_DIR --list\n"
          "       run_saved_model EXPORT_DIR SIGNATURE KEY=FILE.npy [...] [-o OUTPUT_DIR]\n"
          "Runs SIGNATURE of the SavedModel (tag serve) on the .npy inputs and writes each\n"
          "output as OUTPUT_DIR/<output key>.npy (default: the current directory).\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 3) usage();
  const char *export_dir = argv[1];
  const char *signature_name = argv[2];
  const char *output_dir = ".";
  const char *feeds[MAX_TENSORS];
  int num_feeds = 0;
  int list = strcmp(signature_name, "--list") == 0;
  for (int i = 3; i < argc; ++i) {
    if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      output_dir = argv[++i];
    } else if (strchr(argv[i], '=') && num_feeds < MAX_TENSORS) {
      feeds[num_feeds++] = argv[i];
    } else {
      usage();
    }
  }

  TF_Status *status = TF_NewStatus();
  TF_Graph *graph = TF_NewGraph();
  TF_SessionOptions *options = TF_NewSessionOptions();
  TF_Buffer *meta_graph = TF_NewBuffer();
  const char *tags[] = {"serve"};
  TF_Session *session = TF_LoadSessionFromSavedModel(options, NULL, export_dir, tags, 1, graph,
                                                     meta_graph, status);
  if (TF_GetCode(status) != TF_OK) die("cannot load %s: %s", export_dir, TF_Message(status));

  if (list) {
    for_each_signature(meta_graph, print_signature, NULL);
    return 0;
  }
  Lookup lookup;
  memset(&lookup, 0, sizeof(lookup));
  lookup.wanted = signature_name;
  for_each_signature(meta_graph, find_signature, &lookup);
  if (!lookup.matched)
    die("the export has no signature %s (see: run_saved_model %s --list)", signature_name,
        export_dir);
  Signature *signature = &lookup.found;

  TF_Output inputs[MAX_TENSORS], outputs[MAX_TENSORS];
  TF_Tensor *input_values[MAX_TENSORS], *output_values[MAX_TENSORS];
  for (int i = 0; i < signature->num_inputs; ++i) {
    const TensorInfo *info = &signature->inputs[i];
    const char *file = NULL;
    size_t key_length = strlen(info->key);
    for (int j = 0; j < num_feeds; ++j)
      if (strncmp(feeds[j], info->key, key_length) == 0 && feeds[j][key_length] == '=')
        file = feeds[j] + key_length + 1;
    if (!file) die("signature input %s needs a file: %s=FILE.npy", info->key, info->key);
    Array array = read_npy(file);
    if ((int)array.dtype != info->dtype) {
      char message[MAX_NAME * 2];
      snprintf(message, sizeof(message), "%s has dtype %s, signature input %s takes %s", file,
               dtype_name(array.dtype), info->key, dtype_name(info->dtype));
      die("%s%s", message, NULL);
    }
    inputs[i] = graph_output(graph, info->name);
    input_values[i] = to_tensor(&array);
  }
  for (int j = 0; j < num_feeds; ++j) {
    int known = 0;
    for (int i = 0; i < signature->num_inputs; ++i) {
      size_t key_length = strlen(signature->inputs[i].key);
      known |= strncmp(feeds[j], signature->inputs[i].key, key_length) == 0 &&
               feeds[j][key_length] == '=';
    }
    if (!known) die("%s: the signature has no such input (see --list)%s", feeds[j], NULL);
  }
  for (int i = 0; i < signature->num_outputs; ++i)
    outputs[i] = graph_output(graph, signature->outputs[i].name);

  TF_SessionRun(session, NULL, inputs, input_values, signature->num_inputs, outputs,
                output_values, signature->num_outputs, NULL, 0, NULL, status);
  if (TF_GetCode(status) != TF_OK)
    die("running %s failed: %s", signature_name, TF_Message(status));

  mkdir(output_dir, 0777); /* May exist; a failure shows when writing. */
  for (int i = 0; i < signature->num_outputs; ++i) {
    char path[4 * MAX_NAME];
    snprintf(path, sizeof(path), "%s/%s.npy", output_dir, signature->outputs[i].key);
    write_tensor(path, output_values[i]);
    printf("%s\n", path);
    TF_DeleteTensor(output_values[i]);
  }
  for (int i = 0; i < signature->num_inputs; ++i) TF_DeleteTensor(input_values[i]);
  TF_CloseSession(session, status);
  TF_DeleteSession(session, status);
  TF_DeleteBuffer(meta_graph);
  TF_DeleteSessionOptions(options);
  TF_DeleteGraph(graph);
  TF_DeleteStatus(status);
  return 0;
}
