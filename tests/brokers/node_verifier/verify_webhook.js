const crypto = require('crypto');
function verifyWebhook(rawBody, signature, secret) {
const expected = 'sha256=' + crypto
.createHmac('sha256', secret)
.update(rawBody) // raw string body
.digest('hex');
return crypto.timingSafeEqual(
Buffer.from(signature),
Buffer.from(expected)
);
}

// ---- everything above this line is the seed's verifier, byte for byte (test_webhooks checks it) ----
module.exports = { verifyWebhook };
