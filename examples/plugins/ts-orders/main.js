// ts-orders: an example taskerd step-handler plugin in JavaScript with
// TypeScript types (@ts-check), built on @taskerd/plugin. taskerd starts it
// as `node main.js`; see README.md.
// @ts-check
'use strict';

const { serve } = require('@taskerd/plugin');
const { configure, quote, reserve, confirm } = require('./handlers');

serve({
  handlers: { quote, reserve, confirm },
  descriptions: {
    quote: 'price the order from the catalogue',
    reserve: 'take the items from stock; waits for restock when short',
    confirm: 'tell the customer; emits order.confirmed',
  },
  configure,
});
